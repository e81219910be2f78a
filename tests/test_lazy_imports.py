"""Lazy imports (issue 23): importing the plugin loads no pipeline, agent or network code, and the registry
imports an agent's module only when that agent is asked for."""

from __future__ import annotations

import json
import subprocess
import sys

from pytest_speedrun.agents import registry


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_plugin_loads_no_pipeline_agents_or_network_code() -> None:
    loaded = _modules_after("import pytest_speedrun.plugin")
    assert "pytest_speedrun.plugin" in loaded
    heavy = {"torch", "openai", "ssl", "urllib.request", "filelock", "pytest_speedrun.agents.llm",
             "pytest_speedrun.agents.coding", "pytest_speedrun.pipeline.session", "pytest_speedrun.judging.dataflow"}
    assert not heavy & loaded


def test_the_offline_agents_do_not_load_the_coding_or_llm_agents() -> None:
    loaded = _modules_after("from pytest_speedrun.agents.registry import make_agent, available_agents\n"
                            "make_agent('oracle'); make_agent('baseline'); available_agents()")
    assert not {"pytest_speedrun.agents.coding", "pytest_speedrun.agents.llm.agent",
                "pytest_speedrun.agents.llm.client", "pytest_speedrun.agents.command"} & loaded


def test_the_registrys_preset_names_are_the_modules_own() -> None:
    from pytest_speedrun.agents.coding import PRESETS as CODING
    from pytest_speedrun.agents.llm import PRESETS as LLM

    assert sorted(registry.CODING_PRESET_NAMES) == sorted(CODING)
    assert sorted(registry.LLM_PRESET_NAMES) == sorted(LLM)


def test_a_coding_preset_still_resolves_through_its_module() -> None:
    agent = registry.make_agent("aider:some-model")
    assert type(agent).__module__ == "pytest_speedrun.agents.coding"


def test_a_session_of_an_offline_agent_loads_no_llm_client_slurm_launcher_or_downloader(pytester) -> None:
    """The plugin's start-up and an oracle session's configuration (options, settings, the agent, the session
    object) read the LLM option tables but never load the client or the agent, openai or urllib. (The Slurm
    settings module loads: settings read its ini keys.)"""
    # Only this plugin (other installed plugins import what they like: hypothesis loads urllib).
    code = ("import os, pytest\nos.environ['PYTEST_DISABLE_PLUGIN_AUTOLOAD'] = '1'\n"
            "pytest.main(['-q', '-p', 'pytest_speedrun.plugin', '-p', 'no:cacheprovider', '--speedrun-agent=oracle', "
            "'--collect-only', "
            "'--speedrun-suite=tiny', '-k', 'nothing-matches'])")
    loaded = _modules_after(code)
    assert "pytest_speedrun.pipeline.session" in loaded, "control: the session was made"
    assert not {"pytest_speedrun.agents.llm.client", "pytest_speedrun.agents.llm.agent", "openai",
                "urllib.request"} & loaded


def test_this_interpreters_torch_version_is_read_in_process_and_agrees_with_a_subprocess(monkeypatch) -> None:
    from pytest_speedrun.execution import runtime

    calls, real_run = [], subprocess.run
    monkeypatch.setattr(runtime.subprocess, "run", lambda *a, **k: calls.append(a) or real_run(*a, **k))
    here = runtime.torch_version(sys.executable)
    assert calls == []
    other = real_run([sys.executable, "-c", runtime._TORCH_VERSION], capture_output=True, text=True,
                           timeout=120).stdout.strip()
    assert here == other
