"""Entry point for Serve config files: ``import_path: pipelines.serve_app:app_builder``.

    serve run cluster/serve.yaml       # a local cluster, in the foreground
    serve deploy cluster/serve.yaml    # a running cluster (ray start --head ...)

``args`` holds ``model`` (the artifact URI), optionally ``config`` (a YAML file
of ServeConfig settings) and any other ServeConfig setting, which wins over the
file. Per-deployment entries in the Serve config file then override settings
by deployment name (``api``, ``style-<style>``).
"""

from ray import serve

from musicgen.serving.app import build_app, load_config


def app_builder(args: dict) -> serve.Application:
    settings = dict(args)
    return build_app(load_config(settings.pop("config", None), **settings))
