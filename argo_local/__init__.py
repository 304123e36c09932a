"""A local runner for Argo WorkflowTemplates: the same YAML, processes instead of pods.

``python -m workers run FILE|TEMPLATE_NAME`` loads a Workflow, WorkflowTemplate or
CronWorkflow, checks every field against the subset this runner implements
(:mod:`argo_local.model.spec`), and executes it on this machine with Argo's
documented semantics for steps, DAGs, loops, parameters, retries and deadlines
(:mod:`argo_local.engine.run`). Each node gets its own filesystem view through
bubblewrap where available (:mod:`argo_local.pods.sandbox`).
"""
