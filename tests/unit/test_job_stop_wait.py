"""`ray job stop` sends SIGTERM and SIGKILLs the entry point ``RAY_JOB_STOP_WAIT_TIME_S`` later (3 s by
default, too short for a clean stop: docs/reliability.md). Every runtime env our jobs are submitted with
gives the stop longer than musicgen's own deadline, so the job stops cleanly rather than being killed."""

from pathlib import Path

import yaml

from musicgen import stopping

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def job_runtime_envs() -> dict[str, dict]:
    envs = {"runtime_env.yaml": yaml.safe_load((CLUSTER / "runtime_env.yaml").read_text())}
    for path in sorted((CLUSTER / "kuberay").glob("rayjob-*.yaml")):
        envs[path.name] = yaml.safe_load(yaml.safe_load(path.read_text())["spec"]["runtimeEnvYAML"])
    return envs


def test_every_job_runtime_env_waits_longer_than_the_stop_deadline():
    envs = job_runtime_envs()
    assert len(envs) == 4, sorted(envs)
    for name, env in envs.items():
        wait = env["env_vars"].get("RAY_JOB_STOP_WAIT_TIME_S")
        assert wait is not None, f"{name}: Ray's 3 s would SIGKILL a stop in progress"
        assert isinstance(wait, str) and wait.isdigit(), f"{name}: env_vars are strings; Ray reads it with int()"
        assert int(wait) > stopping.DEFAULT_DEADLINE_S, name


def test_ray_reads_the_wait_from_the_supervisor_environment():
    """The supervisor actor runs in the job's runtime env, and reads the variable from os.environ when it
    stops the job: so the runtime env's env_vars are where it is set (checked against the installed Ray)."""
    import inspect

    from ray.dashboard.modules.job import job_manager, job_supervisor

    source = " ".join(inspect.getsource(job_supervisor.JobSupervisor).split())
    assert 'os.environ.get( "RAY_JOB_STOP_WAIT_TIME_S",' in source
    assert job_supervisor.JobSupervisor.DEFAULT_RAY_JOB_STOP_WAIT_TIME_S == 3
    assert "_get_supervisor_runtime_env(" in inspect.getsource(job_manager.JobManager.submit_job)
