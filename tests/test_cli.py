"""main.py's command line: --list, --help, and the persistent compilation cache's folder."""
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _main(args, env=None, cwd=ROOT):
  return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, env=env,
                        capture_output=True, text=True, timeout=300)


def test_list_and_help_show_configs_presets_and_methods(tmp_path):
  for args in (["--list"], ["--help"]):
    r = _main(args, cwd=tmp_path)
    assert "configs/demo.py[:method]" in r.stdout and "configs/grids/watch.py" in r.stdout, args
    assert "supervised, fixmatch, flexmatch, freematch, softmatch, aplt" in r.stdout, args
  assert r.stdout.count("\n") <= 60 and "--workdir=runs/fm" in r.stdout  # one screen, example


def _cache_dir(flag, **env_vars):
  env = {k: v for k, v in os.environ.items()
         if k not in ("APLT_CACHE_DIR", "XDG_CACHE_HOME")} | env_vars
  code = f"import main; print(main.compilation_cache_dir({flag!r}))"
  r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                     text=True, timeout=120, check=True)
  return r.stdout.strip()


def test_compilation_cache_folder_defaults_to_the_user_cache(tmp_path):
  home = str(tmp_path)
  assert _cache_dir(None, HOME=home) == os.path.join(home, ".cache", "aplt_jax", "jax")
  assert _cache_dir(None, HOME=home, XDG_CACHE_HOME="/x") == "/x/aplt_jax/jax"
  assert _cache_dir(None, HOME=home, XDG_CACHE_HOME="/x", APLT_CACHE_DIR="/c") == "/c"
  assert _cache_dir("~/mine", HOME=home, APLT_CACHE_DIR="/c") == os.path.join(home, "mine")
  assert _cache_dir("none", APLT_CACHE_DIR="/c") == "None"
