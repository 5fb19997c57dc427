"""What the container image is built from: the wheel `docker build` installs (it must carry the
migrations and templates, not just the code), compose.yaml's topology, and — where Docker is
there — the image itself. The topology's behaviour (two instances on one PostgreSQL, one
ticking, both delivering) is tested without Docker in test_multi_instance.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parent.parent


def test_the_installed_wheel_migrates_a_database_and_renders_a_digest(tmp_path: Path) -> None:
    """Installed from its wheel, as the image does (no source tree on the path), Liaison
    creates its schema and renders the HTML digest from its templates."""
    source = tmp_path / "source"  # the checkout's files only: no stale build/ folder helps
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("liaison-*.whl"))
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "work"
    work.mkdir()
    # -S: no site-packages processing, so the editable install of this checkout is not seen;
    # the dependencies come from the venv's site-packages, after the installed wheel.
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(target), sysconfig.get_paths()["purelib"]]),
        LIAISON_DATABASE_URL=f"sqlite:///{work / 'w.db'}",
        MPLCONFIGDIR=str(tmp_path / "mpl"),
    )
    liaison = [sys.executable, "-S", "-c", "import app; print(app.__file__); app.main()"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*liaison, *args], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )

    upgraded = run("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.startswith(str(target))  # the installed copy, not this checkout
    assert "Database is at the latest schema." in upgraded.stdout
    digest = run("digest", "--format", "html")
    assert digest.returncode == 0, digest.stderr
    assert '<html lang="en">' in digest.stdout and "<footer>" in digest.stdout


def test_compose_runs_migrations_once_then_two_instances_one_ticking() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"] and migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    serving = {name: s for name, s in services.items() if s.get("command", [None])[0] == "serve"}
    assert len(serving) == 2
    assert sum("--no-scheduler" in s["command"] for s in serving.values()) == 1
    for service in serving.values():
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert service["environment"]["LIAISON_DATABASE_URL"].startswith("postgresql://")
    ports = [s["ports"][0].split(":")[0] for s in serving.values()]
    assert len(set(ports)) == 2
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER liaison" in dockerfile and "/healthz" in dockerfile
    assert 'ENTRYPOINT ["liaison"]' in dockerfile


def _docker_problem() -> str | None:
    if shutil.which("docker") is None:
        return "Docker is not installed on this machine"
    info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30)
    if info.returncode != 0:
        return f"the Docker daemon does not answer: {info.stderr.strip()[:200]}"
    return None


@pytest.mark.skipif(_docker_problem() is not None, reason=str(_docker_problem()))
def test_the_image_builds_and_runs_liaison_as_a_non_root_user() -> None:
    tag = "liaison:test"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=1800)
    helped = subprocess.run(
        ["docker", "run", "--rm", tag, "--help"], capture_output=True, text=True, timeout=120
    )
    assert helped.returncode == 0 and "serve" in helped.stdout
    user = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert user.stdout.strip() not in ("", "0")
