"""Argo's two expression languages, each faithful to its own library.

* ``when`` is govaluate after ``{{...}}`` substitution (Argo v4.1.2 workflow/controller/steps.go
  ``shouldExecute``; github.com/Knetic/govaluate MANUAL.md; docs/walk-through/conditionals.md).
* ``retryStrategy.expression``, ``valueFrom.expression`` and ``{{= }}`` tags are expr-lang
  (util/template/expression_template.go, util/expr/env/env.go, docs/variables.md "Expression",
  docs/retries.md; github.com/expr-lang/expr v1.17 docs/language-definition.md), with Argo's
  ``asInt``, ``asFloat``, ``jsonpath``, ``toJson`` and the ``sprig`` map (Masterminds/sprig v3).

The tables are written from those documents; the runs at the end execute small workflows
through ``workers run``.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest

from argo_local.expr import exprlang, golang, govaluate, jsonpath, sprig
from argo_local.expr.depends import ExprError
from workers.runadapter import main

# ------------------------------------------------------------------ govaluate (when)

WHEN_CASES = [
    # MANUAL.md "Types": every numeric literal is a float64, so 1 and 1.0 are equal...
    ("1 == 1.0", True),
    ("2 > 1.5", True),
    # ...while quoted literals are strings, compared as strings (reflect.DeepEqual)
    ("'1' == '1.0'", False),
    ("'1' == 1", False),
    ("'b' > 'a'", True),
    # shouldExecute turns bare words into strings: the coinflip example's `result == heads`
    ("heads == heads", True),
    ("heads == tails", False),
    ("tails != heads", True),
    ("Succeeded == Succeeded && 3 > 0", True),
    # "Membership IN": a parenthesised list; equality without type conversion
    ("heads in (heads, tails)", True),
    ("'c' in ('a', 'b')", False),
    ("1 in (1, 2)", True),
    ("'1' in (1, 2)", False),
    # "Regex comparators": Go regexp, matched anywhere in the string
    ("hello =~ 'ell'", True),
    ("hello =~ '^ell'", False),
    ("hello !~ 'xyz'", True),
    ("'heads' =~ hea", True),  # conditionals.md: `{{...}} =~ hea`
    # logical operators, short-circuit, prefix !
    ("true && false || true", True),
    ("!(1 > 2)", True),
    ("!true == false", True),
    ("false && 'not a bool'", False),  # "short-circuit the operation" (MANUAL.md)
    # "Addition, concatenation": + joins when either side is a string
    ("'a' + 'b' == 'ab'", True),
    ("'v' + 2 == 'v2'", True),
    ("1 + 2 == 3", True),
    # precedence and left associativity (stagePlanner.go)
    ("2 + 3 * 4 == 14", True),
    ("10 - 2 - 3 == 5", True),
    ("2 ** 3 == 8", True),
    ("7 % 4 == 3", True),
    ("(1 | 2) == 3", True),
    ("1 << 3 == 8", True),
    # ternary and null coalescence
    ("(true ? 1 : 2) == 1", True),
    ("(false ? 1 : 2) == 2", True),
    # a quoted literal that reads as a date becomes its Unix time (tryParseTime)
    ("'2024-01-31' == '2024-01-31 00:00'", True),
    ("'2024-01-31T00:00:00Z' < '2024-02-01T00:00:00Z'", True),
    ("'2024-01-31' > 0", True),
    # the empty when runs (shouldExecute: `if when == ""`)
    ("", True),
]


@pytest.mark.parametrize(("text", "expected"), WHEN_CASES)
def test_when_is_govaluate(text: str, expected: bool) -> None:
    """``shouldExecute`` semantics (steps.go) over govaluate's operators (MANUAL.md)."""
    assert govaluate.should_execute(text) is expected


WHEN_ERRORS = [
    # a dot makes an accessor, and Argo passes no parameters
    ("a.b == c", "unexported field"),
    ("Foo.Bar == c", "No parameter 'Foo' found"),
    # '-' is minus: two strings cannot be subtracted (quote hyphenated values)
    ("my-value == my-value", "cannot be used with the modifier '-'"),
    # a version is a malformed number
    ("1.2.3 == 1.2.3", "Unable to parse numeric value '1.2.3'"),
    # symbols are read up to the next space: `==-` is one invalid token, with Argo's hint
    ("a ==-1", "hint: try wrapping the affected expression in quotes"),
    # comparators need two numbers or two strings
    ("'a' < 1", "cannot be used with the comparator '<'"),
    ("1 < 2 < 3", "cannot be used with the comparator '<'"),
    # `in` needs a list
    ("'a' in 'abc'", "cannot be used with the comparator 'in'"),
    # && needs booleans
    ("true && 'x'", "logical operator '&&'"),
    # functions are not available (Argo gives govaluate none)
    ("len(x) > 1", "Undefined function len"),
    # the result must be a boolean
    ("1 + 1", "Expected boolean evaluation"),
    ("'x'", "Expected boolean evaluation"),
    # unbalanced or unfinished expressions
    ("(1 == 1", "Unbalanced parenthesis"),
    ("1 ==", "Unexpected end of expression"),
    ("   ", "Unexpected end of expression"),
    ("'unclosed == x", "Unclosed string literal"),
    # a bad regular expression (Go's RE2 has no lookahead)
    ("x =~ '(?=y)'", "invalid or unsupported Perl syntax"),
    # PREFIX cannot be followed by a (converted) string: Argo's second parse refuses `!word`
    ("!foo", "Cannot transition token types from PREFIX"),
]


@pytest.mark.parametrize(("text", "message"), WHEN_ERRORS)
def test_when_errors_like_govaluate(text: str, message: str) -> None:
    """What govaluate refuses (parsing.go, lexerState.go, evaluationStage.go) is an error."""
    with pytest.raises(ExprError, match=re.escape(message)):
        govaluate.should_execute(text)


def test_govaluate_values() -> None:
    """Numbers are float64; `,` builds a list; `?` without `:` gives nil (MANUAL.md)."""
    assert govaluate.evaluate("1 + 2") == 3.0
    assert govaluate.evaluate("(1, 'a', true)") == [1.0, "a", True]
    assert govaluate.evaluate("false ? 1") is None
    assert govaluate.evaluate("0x10 + 1") == 17.0
    assert govaluate.evaluate("10 / 4") == 2.5


# ------------------------------------------------------------------ expr-lang

RETRY_ENV = {
    "retries": "1",
    "lastRetry.exitCode": "75",
    "lastRetry.status": "Failed",
    "lastRetry.duration": "2.5",
    "lastRetry.message": "Pod was evicted: low on resource",
}
SCOPE = {
    **RETRY_ENV,
    "inputs.parameters.my-param": "hello world",
    "inputs.parameters.n": "7",
    "inputs.parameters.json": '{"a": {"b": [1, 2, 3]}, "name": "x", "ok": true}',
    "inputs.parameters.list": '["a","b"]',
    "steps.flip.outputs.result": "heads",
    "workflow.name": "wf-1",
    "item": '{"name":"first","type":""}',
    "item.name": "first",
    "item.type": "",
}

EXPR_CASES: list[tuple[str, Any]] = [
    # typed: Argo's variables are strings (docs/variables.md, retries: "evaluate to a string type")
    ("lastRetry.exitCode == 75", False),
    ('lastRetry.exitCode == "75"', True),
    ("asInt(lastRetry.exitCode) == 75", True),
    ("asFloat(lastRetry.duration) > 2", True),
    ('"1" == 1', False),
    ("1 == 1.0", True),
    ("int('42') + 1", 43),
    ("float('2.5') * 2", 5.0),
    ("string(1) + 'x'", "1x"),
    ("retries == '1'", True),
    # hyphenated names need brackets (docs/variables.md "Expression")
    ("inputs.parameters['my-param']", "hello world"),
    ("steps.flip.outputs.result == 'heads'", True),
    ("steps['flip'].outputs.result", "heads"),
    ("workflow.name", "wf-1"),
    # a missing map key is nil, and ?? gives the fallback (docs/variables.md)
    ("steps.flip.outputs.parameters?.x ?? 'fallback'", "fallback"),
    ("get(item, 'type') ?? 'always'", ""),
    ("get(item, 'missing') ?? 'always'", "always"),
    ("item.name", "first"),
    # operators (language-definition.md)
    ("10 / 4", 2.5),
    ("7 % 3", 1),
    ("2 ** 3", 8.0),
    ("2 ^ 3", 8.0),
    ("-2 + 5", 3),
    ("'a' + 'b'", "ab"),
    ("1 < 2 < 3", True),
    ("'evicted' matches '^ev'", True),
    ('lastRetry.message matches "(?i)EVICT|preempt"', True),
    ("'hello' contains 'ell'", True),
    ("'hello' startsWith 'he'", True),
    ("'hello' endsWith 'lo'", True),
    ("'x' in ['x', 'y']", True),
    ("'z' not in ['x', 'y']", True),
    ("'a' in {a: 1}", True),
    ("1..3", [1, 2, 3]),
    ("true && false || !false", True),
    ("not true or true and false", False),
    ("lastRetry.status == 'Failed' ? 'retry' : 'stop'", "retry"),
    ("nil ?? 'x'", "x"),
    ("if 1 > 2 { 'a' } else { 'b' }", "b"),
    ("let x = 3; x * x", 9),
    ("[1, 2, 3][0]", 1),
    ("[1, 2, 3][-1]", 3),
    ("[1, 2, 3, 4][1:3]", [2, 3]),
    ("{a: {b: 2}}.a.b", 2),
    ("'abc' | upper()", "ABC"),
    ("$env['workflow'].name", "wf-1"),
    # builtins
    ("len([1, 2]) + len('héllo') + len({a: 1})", 8),
    ("filter([1, 2, 3], # > 1)", [2, 3]),
    ("map([1, 2], {# * 2})", [2, 4]),
    ("all([1, 2], # > 0) && any([1, 2], # > 1) && none([1], # > 5) && one([1, 2], # > 1)", True),
    ("count([1, 2, 3], # > 1)", 2),
    ("sum([1, 2, 3])", 6),
    ("sum([{v: 1}, {v: 2}], .v)", 3),
    ("reduce(1..4, #acc + #)", 10),
    ("reduce([1, 2], #acc + #, 10)", 13),
    ("map(['a', 'b'], #index)", [0, 1]),
    ("find([1, 2, 3], # > 1)", 2),
    ("findIndex([1, 2, 3], # > 1)", 1),
    ("findLast([1, 2, 3], # < 3)", 2),
    ("findLastIndex([1, 2, 3], # < 3)", 1),
    ("groupBy([1, 2, 3], # % 2 == 0)", {"false": [1, 3], "true": [2]}),
    ("sortBy([{a: 2}, {a: 1}], .a)", [{"a": 1}, {"a": 2}]),
    ("sort([3, 1, 2])", [1, 2, 3]),
    ("sort([3, 1, 2], 'desc')", [3, 2, 1]),
    ("concat([1], [2, 3])", [1, 2, 3]),
    ("flatten([1, [2, [3]]])", [1, 2, 3]),
    ("uniq([1, 2, 1])", [1, 2]),
    ("join(['a', 'b'], ',')", "a,b"),
    ("split('a,b', ',')", ["a", "b"]),
    ("splitAfter('a,b', ',')", ["a,", "b"]),
    ("trim('  x  ') + trim('__y__', '_')", "xy"),
    ("trimPrefix('v1.2', 'v') + trimSuffix('a.txt', '.txt')", "1.2a"),
    ("upper('a') + lower('B')", "Ab"),
    ("replace('aXa', 'X', 'Y')", "aYa"),
    ("repeat('ab', 2)", "abab"),
    ("indexOf('apple pie', 'pie')", 6),
    ("lastIndexOf('apple pie apple', 'apple')", 10),
    ("hasPrefix('HelloWorld', 'Hello') && hasSuffix('HelloWorld', 'World')", True),
    ("max(5, 7) + min(5, 7)", 12),
    ("abs(-5)", 5),
    ("ceil(1.5) + floor(1.5) + round(2.5)", 6.0),
    ("mean([1, 2, 3])", 2.0),
    ("median([1, 2, 3, 4])", 2.5),
    ("first([1, 2]) + last([1, 2])", 3),
    ("first([])", None),
    ("take([1, 2, 3], 2)", [1, 2]),
    ("reverse([1, 2, 3])", [3, 2, 1]),
    ("keys({b: 1, a: 2})", ["a", "b"]),
    ("values({b: 1, a: 2})", [2, 1]),
    ("toPairs({a: 1})", [["a", 1]]),
    ("fromPairs([['a', 1]])", {"a": 1}),
    ("get([1, 2], 5)", None),
    ("type(1) + type(1.5) + type('s')", "intfloatstring"),
    ("toBase64('Hello World')", "SGVsbG8gV29ybGQ="),
    ("fromBase64('SGVsbG8gV29ybGQ=')", "Hello World"),
    ("fromJSON(inputs.parameters.list)[1]", "b"),
    ("fromJSON('{\"a\": 1}').a", 1.0),  # JSON numbers are float64
    ('toJSON({"a": [1]})', '{\n  "a": [\n    1\n  ]\n}'),
    ("bitand(0b1010, 0b1100) + bitor(1, 2) + bitxor(3, 1) + bitshl(1, 3)", 8 + 3 + 2 + 8),
    ("bitnot(0b1010)", -11),
    ("bitnand(0b1010, 0b1100)", 2),
    ("bitshr(0b101101, 2)", 11),
    ("bitushr(-5, 2)", 4611686018427387902),
    # Argo's functions (util/expr/env/env.go)
    ("toJson([1, 2])", "[1,2]"),
    ("toJson({b: 'x<y', a: 1.5})", '{"a":1.5,"b":"x\\u003cy"}'),
    ("jsonpath(inputs.parameters.json, '$.a.b[1]')", 2.0),
    ("jsonpath(inputs.parameters.json, '$.name')", "x"),
    ("jsonpath(inputs.parameters.json, '$.ok')", True),
    ("asInt(jsonpath(inputs.parameters.json, '$.a.b[2]')) * 10", 30),
    ("map(fromJSON(inputs.parameters.list), upper(#))", ["A", "B"]),
]


@pytest.mark.parametrize(("text", "expected"), EXPR_CASES)
def test_expr_lang(text: str, expected: Any) -> None:
    """expr-lang's language definition, over Argo's environment (env.GetFuncMap)."""
    value = exprlang.evaluate(text, exprlang.environment(SCOPE))
    assert value == expected
    assert type(value) is type(expected)  # ints stay ints, floats floats


EXPR_ERRORS = [
    ('"a" + 1', "invalid operation: string + int"),
    ("'a' < 1", "invalid operation: string < int"),
    ("1.5 % 2", "invalid operation: float64 % int"),
    ("asInt('7.5')", "int(7.5)"),  # strconv.Atoi
    ("asInt(lastRetry.status)", "int(Failed)"),
    ("asFloat('x')", "float(x)"),
    ("unknownName == 1", "unknown name unknownName"),
    # a hyphen is a minus: `my-param` is my - param, and `param` is not a name
    ("inputs.parameters.my-param", "unknown name param"),
    ("steps.gone.outputs.result", "cannot fetch outputs from <nil>"),
    ("[1][5]", "index out of range"),
    ("'x' in 'xyz'", 'operator "in" not defined on string'),
    ("1 ?? 2 + 3", "cannot be mixed"),
    ("'a' matches '(?=a)'", "invalid or unsupported Perl syntax"),
    ("1 && true", "invalid operation"),
    ("now()", "dates are not supported"),
    ("date('2024-01-01')", "dates are not supported"),
    ("nosuch(1)", "unknown name nosuch"),
    ("sprig.nosuch(1)", "is not a sprig function"),
    ("sprig.genCA('x', 1)", "is not supported by the local runner"),
    ("b'bytes'", "bytes literals are not supported"),
    ("1 +", "unexpected token"),
    ("[1, 2", "expected ,, found 'end'"),
    ("'unterminated", "literal not terminated"),
]


@pytest.mark.parametrize(("text", "message"), EXPR_ERRORS)
def test_expr_lang_errors(text: str, message: str) -> None:
    """Type mismatches, unknown names and unsupported features are errors, not guesses."""
    with pytest.raises(ExprError, match=re.escape(message)):
        exprlang.evaluate(text, exprlang.environment(SCOPE))


def test_unknown_names_are_refused_even_in_the_branch_not_taken() -> None:
    """expr-lang compiles against the environment first: an unknown top-level name fails even
    where it would not be evaluated, while a missing map key in that branch is fine."""
    env = exprlang.environment(SCOPE)
    assert exprlang.evaluate("true ? 1 : steps['gone'].outputs.result", env) == 1
    with pytest.raises(ExprError, match="unknown name tasks"):
        exprlang.evaluate("true ? 1 : tasks.x", env)


def test_retry_condition_must_be_boolean() -> None:
    """``argoexpr.EvalBool``: a non-boolean result is an error."""
    env = exprlang.environment(RETRY_ENV)
    assert exprlang.condition("asInt(lastRetry.exitCode) == 75", env) is True
    with pytest.raises(ExprError, match="to bool"):
        exprlang.condition("lastRetry.exitCode", env)


def test_environment_expands_dotted_names() -> None:
    """util/expand: ``a.b`` becomes a nested map, and a name that is the prefix of another
    (``item`` next to ``item.name``) gives way to the longer one."""
    env = exprlang.expand({"item": "{}", "item.name": "n", "inputs.parameters.x-y": "1"})
    assert env == {"item": {"name": "n"}, "inputs": {"parameters": {"x-y": "1"}}}


RENDER_CASES: list[tuple[Any, str]] = [
    # expression_template.go: JSON, with a string's quotes trimmed
    ("text", "text"),
    (30, "30"),
    (2.5, "2.5"),
    (3.0, "3"),
    (1e21, "1e+21"),
    (1e-7, "1e-7"),  # encoding/json trims the exponent's leading zero
    (0.000001, "0.000001"),
    (True, "true"),
    ([1, "a"], '[1,"a"]'),
    ({"b": 1, "a": [True]}, '{"a":[true],"b":1}'),
]


@pytest.mark.parametrize(("value", "text"), RENDER_CASES)
def test_expression_tag_rendering(value: Any, text: str) -> None:
    """A ``{{= }}`` tag's value is ``json.Marshal``-ed, a string's quotes trimmed."""
    assert exprlang.render(value) == text


def test_expression_tag_nil_is_an_error() -> None:
    """``failed to evaluate expression``: a nil result cannot be rendered."""
    with pytest.raises(ExprError):
        exprlang.render(None)


SPRINT_CASES: list[tuple[Any, str]] = [
    # fmt.Sprintf("%v"), as an output parameter's valueFrom.expression is stored (AnyStringPtr)
    (5.0, "5"),
    (2.5, "2.5"),
    (1e6, "1e+06"),
    (123456.0, "123456"),
    (0.0001, "0.0001"),
    (0.00001, "1e-05"),
    (7, "7"),
    (None, "<nil>"),
    ([1, "a"], "[1 a]"),
    ({"b": 2, "a": 1}, "map[a:1 b:2]"),
    (math.inf, "+Inf"),
]


@pytest.mark.parametrize(("value", "text"), SPRINT_CASES)
def test_go_sprint(value: Any, text: str) -> None:
    """Go's ``%v`` of expr-lang values (``string()`` and ``valueFrom.expression``)."""
    assert golang.sprint(value) == text


def test_output_parameter_expression_default() -> None:
    """scope.go ``resolveParameter`` + operator.go: an error or a nil value takes the
    parameter's ``valueFrom.default`` when it has one."""
    scope = {"inputs.parameters.n": "4"}
    assert exprlang.output_parameter("asInt(inputs.parameters.n) / 8", scope, None) == "0.5"
    assert exprlang.output_parameter("steps.x", {**scope, "steps.y.id": "1"}, "d") == "d"
    with pytest.raises(ExprError):
        exprlang.output_parameter("asInt('x')", scope, None)


# ------------------------------------------------------------------ sprig

SPRIG_CASES: list[tuple[str, Any]] = [
    # strings: the subject comes last (Go template pipelines)
    ("sprig.upper('hello')", "HELLO"),
    ("sprig.lower('HeLLo')", "hello"),
    ("sprig.title('hello world')", "Hello World"),
    ("sprig.untitle('Hello')", "hello"),
    ("sprig.trim('  x  ')", "x"),
    ("sprig.trimAll('$', '$5.00$')", "5.00"),
    ("sprig.trimall('$', '$5$')", "5"),
    ("sprig.trimPrefix('v', 'v1.2')", "1.2"),
    ("sprig.trimSuffix('-', 'a-')", "a"),
    ("sprig.trunc(5, 'hello world')", "hello"),
    ("sprig.trunc(-5, 'hello world')", "world"),
    ("sprig.substr(0, 5, 'hello world')", "hello"),
    ("sprig.repeat(3, 'ab')", "ababab"),
    ("sprig.nospace('a b  c')", "abc"),
    ("sprig.swapcase('aB')", "Ab"),
    ("sprig.contains('ell', 'hello')", True),
    ("sprig.hasPrefix('he', 'hello')", True),
    ("sprig.hasSuffix('lo', 'hello')", True),
    ("sprig.quote('a', 1)", '"a" "1"'),
    ("sprig.squote('a')", "'a'"),
    ("sprig.cat('a', 1, nil, 'b')", "a 1 b"),
    ("sprig.indent(2, 'a\\nb')", "  a\n  b"),
    ("sprig.nindent(2, 'a')", "\n  a"),
    ("sprig.replace(' ', '-', 'a b c')", "a-b-c"),
    ("sprig.plural('one', 'many', 2)", "many"),
    # conversions (spf13/cast: errors become 0)
    ("sprig.toString(1.5)", "1.5"),
    ("sprig.toStrings([1, 'a'])", ["1", "a"]),
    ("sprig.atoi('42')", 42),
    ("sprig.atoi('x')", 0),
    ("sprig.int('0x10')", 16),
    ("sprig.int64('3.0')", 3),
    ("sprig.float64('2.5')", 2.5),
    ("sprig.float64('x')", 0.0),
    ("sprig.split('$', 'a$b')", {"_0": "a", "_1": "b"}),
    ("sprig.splitList(',', 'a,b')", ["a", "b"]),
    ("sprig.splitn(',', 2, 'a,b,c')", {"_0": "a", "_1": "b,c"}),
    ("sprig.join('-', ['a', 1])", "a-1"),
    ("sprig.sortAlpha(['b', 'a'])", ["a", "b"]),
    # integer maths
    ("sprig.add(1, '2', 3.9)", 6),
    ("sprig.add1(1)", 2),
    ("sprig.sub(5, 2)", 3),
    ("sprig.mul(2, 3, 4)", 24),
    ("sprig.div(7, 2)", 3),
    ("sprig.div(-7, 2)", -3),
    ("sprig.mod(7, 3)", 1),
    ("sprig.max(1, 5, 3)", 5),
    ("sprig.biggest(1, 5)", 5),
    ("sprig.min(4, 2, 8)", 2),
    ("sprig.until(3)", [0, 1, 2]),
    ("sprig.untilStep(0, 10, 4)", [0, 4, 8]),
    # float maths
    ("sprig.addf(1.5, 2)", 3.5),
    ("sprig.add1f(1.5)", 2.5),
    ("sprig.subf(5, 1.5)", 3.5),
    ("sprig.mulf(1.5, 2)", 3.0),
    ("sprig.divf(3, 2)", 1.5),
    ("sprig.maxf(1, 2.5)", 2.5),
    ("sprig.minf(1, 2.5)", 1.0),
    ("sprig.floor(1.7)", 1.0),
    ("sprig.ceil(1.2)", 2.0),
    ("sprig.round(3.14159, 2)", 3.14),
    # defaults and logic
    ("sprig.default('d', '')", "d"),
    ("sprig.default('d', 'x')", "x"),
    ("sprig.empty('') && sprig.empty(0) && !sprig.empty('a')", True),
    ("sprig.coalesce('', nil, 'x')", "x"),
    ("sprig.all(1, 'a') && !sprig.all(1, '')", True),
    ("sprig.any('', 0, 'x')", True),
    ("sprig.compact(['a', '', 'b'])", ["a", "b"]),
    ("sprig.ternary('yes', 'no', true)", "yes"),
    # encodings and digests
    ("sprig.b64enc('hi')", "aGk="),
    ("sprig.b64dec('aGk=')", "hi"),
    ("sprig.b32enc('hi')", "NBUQ===="),
    ("sprig.b32dec('NBUQ====')", "hi"),
    ("sprig.sha1sum('a')", "86f7e437faa5a7fce15d1ddcb9eaeaea377667b8"),
    ("sprig.sha256sum('a')[:8]", "ca978112"),
    ("len(sprig.sha512sum('a'))", 128),
    ("sprig.adler32sum('a')", "6422626"),
    ("sprig.toJson({a: 1})", '{"a":1}'),
    ("sprig.toPrettyJson([1])", "[\n  1\n]"),
    ("sprig.toRawJson(['<'])", '["<"]'),
    ("sprig.fromJson('[1]')", [1.0]),
    ("sprig.fromJson('{')", None),
    # lists and dicts
    ("sprig.list(1, 'a')", [1, "a"]),
    ("sprig.tuple(1)", [1]),
    ("sprig.first([1, 2]) + sprig.last([1, 2])", 3),
    ("sprig.rest([1, 2, 3])", [2, 3]),
    ("sprig.initial([1, 2, 3])", [1, 2]),
    ("sprig.reverse([1, 2])", [2, 1]),
    ("sprig.uniq([1, 1, 2])", [1, 2]),
    ("sprig.without([1, 2, 3], 2)", [1, 3]),
    ("sprig.has(2, [1, 2])", True),
    ("sprig.append([1], 2)", [1, 2]),
    ("sprig.push([1], 2)", [1, 2]),
    ("sprig.prepend([1], 0)", [0, 1]),
    ("sprig.concat([1], [2])", [1, 2]),
    ("sprig.dict('a', 1, 'b', 2)", {"a": 1, "b": 2}),
    ("sprig.get({a: 1}, 'a')", 1),
    ("sprig.get({a: 1}, 'z')", ""),
    ("sprig.hasKey({a: 1}, 'a')", True),
    ("sprig.keys({b: 1, a: 2})", ["a", "b"]),
    ("sprig.values({b: 1, a: 2})", [2, 1]),
    ("sprig.pick({a: 1, b: 2}, 'a')", {"a": 1}),
    ("sprig.omit({a: 1, b: 2}, 'a')", {"b": 2}),
    # regular expressions (Go RE2)
    ("sprig.regexMatch('^[a-z]+$', 'abc')", True),
    ("sprig.regexMatch('(', 'abc')", False),  # sprig ignores the compile error
    ("sprig.regexFind('[0-9]+', 'a12b34')", "12"),
    ("sprig.regexFindAll('[0-9]+', 'a12b34', -1)", ["12", "34"]),
    ("sprig.regexFindAll('[0-9]+', 'a12b34', 1)", ["12"]),
    ("sprig.regexReplaceAll('a(x*)b', '-ab-axxb-', '${1}W')", "-W-xxW-"),
    ("sprig.regexReplaceAllLiteral('a(x*)b', '-ab-', '${1}')", "-${1}-"),
    ("sprig.regexSplit('z+', 'pizza', -1)", ["pi", "a"]),
    ("sprig.regexQuoteMeta('1.5')", "1\\.5"),
    # types
    ("sprig.typeOf(1) + sprig.typeOf('a') + sprig.kindOf([1])", "intstringslice"),
    ("sprig.kindIs('map', {a: 1}) && sprig.typeIs('float64', 1.5)", True),
    ("sprig.deepEqual([1], [1]) && !sprig.deepEqual(1, 1.0)", True),
]


@pytest.mark.parametrize(("text", "expected"), SPRIG_CASES)
def test_sprig(text: str, expected: Any) -> None:
    """Sprig v3 functions as documented (masterminds.github.io/sprig), called as Argo does."""
    value = exprlang.evaluate(text, exprlang.environment({}))
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("randAlphaNum", r"[A-Za-z0-9]{8}"),
        ("randAlpha", r"[A-Za-z]{8}"),
        ("randNumeric", r"[0-9]{8}"),
        ("randAscii", r"[ -~]{8}"),
    ],
)
def test_sprig_random_strings(name: str, pattern: str) -> None:
    """The random string functions give ``count`` characters of their alphabet."""
    value = exprlang.evaluate(f"sprig.{name}(8)", exprlang.environment({}))
    assert re.fullmatch(pattern, value)


def test_sprig_random_values() -> None:
    """``randInt(min, max)`` is in [min, max); ``uuidv4`` is a version-4 UUID."""
    env = exprlang.environment({})
    assert all(3 <= exprlang.evaluate("sprig.randInt(3, 5)", env) < 5 for _ in range(20))
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        exprlang.evaluate("sprig.uuidv4()", env),
    )


# Written from sprig v3.3.0 date_test.go (TestToDate, TestUnixEpoch, TestDateInZone,
# TestDuration, TestDurationRound) and docs/date.md, with Unix seconds where those tests pass a
# time.Time (1560458379 is their "13 Jun 19 20:39:39 GMT"). An expr-lang integer is a Go int,
# which date.go's ``case int`` takes as Unix seconds.
SPRIG_DATE_CASES: list[tuple[str, Any]] = [
    ("sprig.date('02/01/2006', sprig.toDate('2006-01-02', '2017-12-31'))", "31/12/2017"),
    (
        "sprig.unixEpoch(sprig.toDate('02 Jan 06 15:04:05 MST', '13 Jun 19 20:39:39 GMT'))",
        "1560458379",
    ),
    ("sprig.dateInZone('02 Jan 06 15:04 -0700', 1560458379, 'UTC')", "13 Jun 19 20:39 +0000"),
    ("sprig.date_in_zone('02 Jan 06 15:04 -0700', 1560458379, 'foobar')", "13 Jun 19 20:39 +0000"),
    ("sprig.dateInZone('2006-01-02 15:04 MST', 1560458379, 'Asia/Tokyo')", "2019-06-14 05:39 JST"),
    (
        "sprig.duration('61') + ' ' + sprig.duration('3600') + ' ' + sprig.duration('93784')",
        "1m1s 1h0m0s 26h3m4s",
    ),
    (
        "sprig.durationRound('2h5s') + sprig.durationRound('24h5s') + sprig.durationRound('2400h5s')",
        "2h1d3mo",
    ),
    (
        "sprig.htmlDate(0) + ' ' + sprig.htmlDateInZone(0, 'America/New_York')",
        "1970-01-01 1969-12-31",
    ),
    # docs/date.md dateModify: "-1.5h" (a duration time.ParseDuration reads)
    ("sprig.date('15:04', sprig.dateModify('-1.5h', sprig.toDate('15:04', '12:00')))", "10:30"),
    ("sprig.date('15:04', sprig.date_modify('nonsense', sprig.toDate('15:04', '12:00')))", "12:00"),
    ("sprig.unixEpoch(sprig.mustDateModify('1s', sprig.mustToDate('2006', '1970')))", "1"),
    ("sprig.date('2006', sprig.must_date_modify('8760h', sprig.toDate('2006', '2001')))", "2002"),
    # toDate of a value the layout does not read is Go's zero time.Time, year 1
    ("sprig.unixEpoch(sprig.toDate('2006-01-02', 'not a date'))", "-62135596800"),
    ("sprig.ago(sprig.now())", "0s"),
]


@pytest.mark.parametrize(("text", "expected"), SPRIG_DATE_CASES)
def test_sprig_dates(text: str, expected: Any) -> None:
    """Sprig's date functions (date.go) with Go's reference-time layouts."""
    assert exprlang.evaluate(text, exprlang.environment({})) == expected


def test_sprig_date_of_a_string_is_now() -> None:
    """sprig date.go ``dateInZone``: a date that is neither a time.Time nor an int is not parsed
    (``default: t = time.Now()``), so Argo's expression-tag-template-workflow.yaml
    ``sprig.date('2006', workflow.creationTimestamp)`` (a string in the expression env) is the
    current year, in the controller's zone (UTC)."""
    import datetime

    env = exprlang.environment({"workflow.creationTimestamp": "1999-01-02T03:04:05Z"})
    year = exprlang.evaluate("sprig.date('2006', workflow.creationTimestamp)", env)
    assert year == str(datetime.datetime.now(datetime.UTC).year)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # sprig switches on int64 only: Go gives 0s for an expr-lang int, the local runner
        # cannot tell it from asInt's int64
        ("sprig.duration(95)", "pass a string"),
        ("sprig.durationRound(95)", "pass a string"),
        ("sprig.unixEpoch('2019-06-13')", "as time.Time"),
        ("sprig.mustToDate('2006-01-02', '2017-13-01')", "month out of range"),
        ("sprig.mustDateModify('1x', sprig.now())", 'unknown unit "x"'),
        # fmt's %v of time.Now() prints its monotonic clock reading (m=+0.0012)
        ("sprig.toString(sprig.now())", "monotonic"),
    ],
)
def test_sprig_date_errors(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=re.escape(message)):
        exprlang.evaluate(text, exprlang.environment({}))


def test_a_time_value_renders_as_go_json() -> None:
    """expression_template.go: a non-string result is JSON-marshaled; time.Time's MarshalJSON
    is RFC 3339 with nanoseconds (trailing zeros dropped)."""
    env = exprlang.environment({})
    value = exprlang.evaluate(
        "sprig.toDate('2006-01-02 15:04:05.000', '2017-12-31 10:00:00.250')", env
    )
    assert exprlang.render(value) == '"2017-12-31T10:00:00.25Z"'


def test_every_sprig_function_is_tested() -> None:
    """Each function the runner implements appears in this file's tables."""
    covered = " ".join(text for text, _ in SPRIG_CASES + SPRIG_DATE_CASES)
    covered += " sprig.randAlphaNum sprig.randAlpha "
    covered += "sprig.randNumeric sprig.randAscii sprig.randInt sprig.uuidv4 "
    missing = [
        n for n in sprig.FUNCTIONS if f"sprig.{n}(" not in covered and f"sprig.{n} " not in covered
    ]
    assert missing == []


def test_sprig_go_types_are_enforced() -> None:
    """expr-lang calls sprig through reflection: a Go ``string`` parameter needs a string."""
    with pytest.raises(ExprError, match="as string"):
        exprlang.evaluate("sprig.upper(1)", exprlang.environment({}))
    with pytest.raises(ExprError, match="as int"):
        exprlang.evaluate("sprig.repeat('3', 'a')", exprlang.environment({}))


# ------------------------------------------------------------------ jsonpath

DOC = {
    "employees": [
        {"name": "Baris", "age": 43.0},
        {"name": "Mo", "age": 42.0},
        {"name": "Jai", "age": 44.0},
    ],
    "a": {"b": {"c": 1.0}},
}

JSONPATH_CASES: list[tuple[str, Any]] = [
    # evilmonkeyinc/jsonpath README "Supported Syntax"
    ("$.a.b.c", 1.0),
    ("$['a']['b']", {"c": 1.0}),
    ("$.employees[0].name", "Baris"),
    ("$.employees[-1].name", "Jai"),
    ("$.employees[*].name", ["Baris", "Mo", "Jai"]),
    ("$.employees[0,2].age", [43.0, 44.0]),
    ("$.employees[0:1]", [{"name": "Baris", "age": 43.0}]),
    ("$.employees[::2].name", ["Baris", "Jai"]),
    ('$.employees[?(@.name=="Baris")].age', [43.0]),
    ("$.employees[?(@.age>42 && @.age<44)].name", ["Baris"]),
    ("$.employees[?(@.name =~ '^M')].name", ["Mo"]),
    ("$..c", [1.0]),
    ("$.employees.length", 3.0),
]


@pytest.mark.parametrize(("path", "expected"), JSONPATH_CASES)
def test_jsonpath(path: str, expected: Any) -> None:
    """Argo's ``jsonpath()`` (examples/expression-destructure-json*.yaml use these forms)."""
    assert jsonpath.query(path, DOC) == expected


def test_jsonpath_missing_key_is_an_error() -> None:
    """A definite path that does not exist fails (key token: "not found")."""
    with pytest.raises(ExprError, match="not found"):
        jsonpath.query("$.nope", DOC)


# ------------------------------------------------------------------ static checks


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sprig.upper(x)", None),
        ("asInt(x) + asFloat(y) + len(toJson(jsonpath(z, '$')))", None),
        ("filter(x, # > 1) | map(# * 2)", None),
        ("now()", "now() is not supported"),
        ("sprig.date('2006', x)", None),
        (
            "sprig.semverCompare('>=1', x)",
            "sprig.semverCompare() is not supported by the local runner",
        ),
        ("sprig.nope(x)", "sprig.nope() is not a sprig function"),
        ("toYaml(x)", "function toYaml() is not supported"),
        ("x.Seconds()", "method calls (.Seconds()) are not supported"),
    ],
)
def test_check_refuses_unsupported_functions(text: str, message: str | None) -> None:
    """``exprlang.check`` runs before a workflow starts: unsupported functions are named."""
    if message is None:
        exprlang.check(text)
    else:
        with pytest.raises(ExprError, match=re.escape(message)):
            exprlang.check(text)


# ------------------------------------------------------------------ workflows run for real


def _run(tmp_path: Path, text: str, *args: str) -> tuple[int, dict[str, Any]]:
    source = tmp_path / "wf.yaml"
    source.write_text(text)
    runs = tmp_path / "runs"
    code = main([str(source), "--runs", str(runs), *args])
    logs = list(runs.glob("*/run.json"))
    return code, json.loads(logs[0].read_text()) if logs else {}


def _nodes(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["displayName"]: n for n in record["status"]["nodes"].values()}


def _pods(record: dict[str, Any], name: str) -> list[dict[str, Any]]:
    by = _nodes(record)
    return [
        n
        for n in record["status"]["nodes"].values()
        if n["type"] == "Pod" and n["displayName"].startswith(name)
    ] or [by[name]]


WHEN_WORKFLOW = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: when-
spec:
  entrypoint: main
  arguments:
    parameters:
      - name: n
        value: "1"
      - name: coin
        value: heads
  templates:
    - name: main
      steps:
        - - name: quoted-strings
            template: echo
            when: "'{{workflow.parameters.n}}' == '1.0'"
          - name: numbers
            template: echo
            when: "{{workflow.parameters.n}} == 1.0"
          - name: bare-words
            template: echo
            when: "{{workflow.parameters.coin}} == heads"
          - name: in-list
            template: echo
            when: "{{workflow.parameters.coin}} in (tails, heads)"
          - name: expression-tag
            template: echo
            when: "{{= workflow.parameters.n == '1' }} && {{workflow.parameters.n}} > 0"
    - name: echo
      script:
        image: python:3.11
        command: [python]
        source: print("ran")
"""


def test_when_runs_like_argo(tmp_path: Path) -> None:
    """govaluate ``when`` in a real run (conditionals.md, steps.go shouldExecute): quoted
    numbers compare as strings so Argo skips ``'1' == '1.0'``; unquoted ones are numbers; bare
    words are strings; a ``{{= }}`` tag is evaluated first and its ``true`` goes to govaluate."""
    code, rec = _run(tmp_path, WHEN_WORKFLOW)
    assert code == 0, rec
    by = _nodes(rec)
    assert by["quoted-strings"]["phase"] == "Skipped"
    assert by["numbers"]["phase"] == "Succeeded"
    assert by["bare-words"]["phase"] == "Succeeded"
    assert by["in-list"]["phase"] == "Succeeded"
    assert by["expression-tag"]["phase"] == "Succeeded"


TAG_WORKFLOW = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: tags-
spec:
  entrypoint: main
  arguments:
    parameters:
      - name: config
        value: '{"employees": [{"name": "Baris", "age": 43}, {"name": "Mo", "age": 42}]}'
  templates:
    - name: main
      inputs:
        parameters:
          - name: n
            value: "{{=jsonpath(workflow.parameters.config, '$.employees[0].age')}}"
      steps:
        - - name: shout
            template: show
            arguments:
              parameters:
                - name: my-word
                  value: hello
                - name: n
                  value: "{{inputs.parameters.n}}"
      outputs:
        parameters:
          - name: half
            valueFrom:
              expression: "asInt(inputs.parameters.n) / 2"
          - name: fallback
            valueFrom:
              expression: "asInt(steps.shout.outputs.result)"
              default: "none"
    - name: show
      inputs:
        parameters:
          - name: my-word
          - name: n
      script:
        image: python:3.11
        command: [python]
        source: |
          print("{{=sprig.upper(inputs.parameters['my-word'])}}")
          print("{{= asInt(inputs.parameters.n) * 10 }}")
          print('{{= map([1, 2], # * 2) }}')
"""


def test_expression_tags_in_a_run(tmp_path: Path) -> None:
    """``{{= }}`` tags (docs/variables.md "Expression"): a sprig call, arithmetic on ``asInt``,
    a list rendered as JSON, ``jsonpath`` of a JSON parameter (a float64, printed ``43``); a
    steps template's ``valueFrom.expression`` printed with Go's %v, and its default when the
    expression fails (scope.go ``resolveParameter``)."""
    code, rec = _run(tmp_path, TAG_WORKFLOW)
    assert code == 0, rec
    assert _nodes(rec)["shout"]["outputs"]["result"].splitlines() == ["HELLO", "430", "[2,4]"]
    root = rec["status"]["nodes"][rec["metadata"]["name"]]
    params = {p["name"]: p["value"] for p in root["outputs"]["parameters"]}
    assert params == {"half": "21.5", "fallback": "none"}


RETRY_WORKFLOW = """\
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: retry-expr-
spec:
  entrypoint: flaky
  arguments:
    parameters:
      - name: expression
        value: unused
  templates:
    - name: flaky
      inputs:
        parameters:
          - name: safe-to-retry
            value: "true"
      retryStrategy:
        limit: "3"
        expression: EXPRESSION
      script:
        image: python:3.11
        command: [python]
        source: |
          import sys
          sys.exit(0 if {{retries}} >= 2 else 75)
"""


@pytest.mark.parametrize(
    ("expression", "attempts", "code"),
    [
        # exitCode is a string: the untyped comparison never holds (docs/variables.md, retries)
        ("lastRetry.exitCode == 75", 1, 1),
        ("asInt(lastRetry.exitCode) == 75", 3, 0),
        ("lastRetry.exitCode == '75' && asInt(retries) < 5", 3, 0),
        # the template's {{inputs}} are substituted first (examples/retry-conditional.yaml)
        ("{{inputs.parameters.safe-to-retry}} == true && asInt(lastRetry.duration) < 120", 3, 0),
        ("{{inputs.parameters.safe-to-retry}} == false", 1, 1),
    ],
)
def test_retry_expression_is_typed(
    tmp_path: Path, expression: str, attempts: int, code: int
) -> None:
    """``retryStrategy.expression`` is expr-lang over string variables (operator.go
    ``buildRetryStrategyLocalScope``): without ``asInt`` exit code 75 is never retried."""
    text = RETRY_WORKFLOW.replace("EXPRESSION", json.dumps(expression))
    got, rec = _run(tmp_path, text)
    assert got == code, rec
    pods = [n for n in rec["status"]["nodes"].values() if n["type"] == "Pod"]
    assert len(pods) == attempts


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("\"{{=sprig.genCA('x', 365)}}\"", "sprig.genCA() is not supported by the local runner"),
        ('"{{= now() }}"', "now() is not supported"),
        ('"{{ = 1 }}"', "the = must follow {{ directly"),
        ('"{{= 1 + }}"', "unexpected token"),
    ],
)
def test_unsupported_expression_is_refused_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, message: str
) -> None:
    """Bad input: a one-line error naming the file, the field and the function, exit 2."""
    text = TAG_WORKFLOW.replace('"{{= asInt(inputs.parameters.n) * 10 }}"', field.strip('"'))
    code, rec = _run(tmp_path, text)
    err = capsys.readouterr().err
    assert code == 2
    assert rec == {}  # nothing ran
    assert "wf.yaml" in err and message in err
    assert "Traceback" not in err


def test_unsupported_retry_function_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``retryStrategy.expression`` is checked as a whole expression before running."""
    text = RETRY_WORKFLOW.replace("EXPRESSION", json.dumps("sprig.semver('1.0') != nil"))
    code, rec = _run(tmp_path, text)
    err = capsys.readouterr().err
    assert code == 2 and rec == {}
    assert "retryStrategy.expression" in err and "sprig.semver()" in err


@pytest.mark.parametrize(
    ("pattern", "text", "found"),
    [
        # Go's regexp/syntax: \d \w are ASCII, $ is the end of the text without (?m)
        (r"^\d+$", "12", True),
        (r"^\d+$", "12\n", False),
        (r"\w", "é", False),
        (r"[[:alpha:]]+", "1ab", True),
        (r"(?i)EVICT|preempt", "Pod evicted", True),
        (r"(?m)^b$", "a\nb\n", True),
        (r"a\z", "a", True),
        (r"\Qa.b\E", "axb", False),
        (r"(?<name>a)", "a", True),
    ],
)
def test_go_regular_expressions(pattern: str, text: str, found: bool) -> None:
    """``matches``, ``=~`` and sprig's regex functions use Go's RE2 syntax (pkg regexp/syntax)."""
    assert (golang.regex(pattern).search(text) is not None) is found


@pytest.mark.parametrize("pattern", [r"(a)\1", r"(?=a)", r"(?<!a)b"])
def test_go_regular_expressions_refuse_perl_only_syntax(pattern: str) -> None:
    """RE2 has no backreferences or lookaround: Go refuses them, so the runner does too."""
    with pytest.raises(golang.GoError):
        golang.regex(pattern)
