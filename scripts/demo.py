#!/usr/bin/env python3
"""The built-in demo, the whole product in one run with no internet:

1. online side: generate a tiny real GGUF, build the demo bundle (examples/bundles/demo.yaml:
   a model created from the GGUF, a chat bot on top of it, this machine's llama.cpp build and
   every wheel), verify it;
2. "scp": extract the tarball somewhere else;
3. offline side, inside a network namespace with no network (``unshare -n``, lo only, when we
   may create one): ``install.sh --prefix … --no-systemd``, start the server, chat with it
   through the Ollama API, list the models with the installed CLI, stop the server.

    .venv/bin/python scripts/demo.py [--workdir DIR] [--port 11500]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_tiny_model import write_tiny_gguf  # noqa: E402

# What runs on the "air-gapped" side: POSIX sh and the host's python3 (stdlib only) as the client.
OFFLINE = r'''
set -eu
ip link set lo up 2>/dev/null || true
cd "$BUNDLE"
./install.sh --prefix "$PREFIX" --no-systemd --yes --host "127.0.0.1:$PORT" > "$WORK/install.log" 2>&1 \
  || { tail -n 30 "$WORK/install.log"; exit 1; }
tail -n 12 "$WORK/install.log"
"$PREFIX/lib/llmcrate/start.sh" > "$WORK/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
python3 - "$PORT" <<'PY'
import json, sys, time, urllib.request
base = f"http://127.0.0.1:{sys.argv[1]}"
for _ in range(240):
    try:
        urllib.request.urlopen(base + "/api/version", timeout=1).read()
        break
    except OSError:
        time.sleep(0.25)
else:
    sys.exit("the server did not come up; see serve.log")
body = {"model": "tinybot", "stream": False, "options": {"num_predict": 24, "seed": 1, "temperature": 1.0},
        "messages": [{"role": "user", "content": "Hello from the air-gapped side!"}]}
req = urllib.request.Request(base + "/api/chat", data=json.dumps(body).encode(),
                             headers={"Content-Type": "application/json"})
reply = json.load(urllib.request.urlopen(req, timeout=120))
print("\n$ curl -d '{\"model\": \"tinybot\", \"messages\": [...]}' " + base + "/api/chat")
print("answer (random weights, so random text):", repr(reply["message"]["content"]))
print(f"  {reply['eval_count']} tokens in {reply['eval_duration'] / 1e6:.0f} ms, "
      f"done_reason={reply['done_reason']}")
PY
echo
echo "\$ llmcrate list    # the installed CLI, through the server"
OLLAMA_HOST="127.0.0.1:$PORT" "$PREFIX/bin/llmcrate" list
'''


def run(cmd: list[str], *, env: dict[str, str], title: str) -> None:
    print(f"\n$ {' '.join(cmd)}    # {title}", flush=True)
    subprocess.run(cmd, env=env, check=True)


def netns() -> list[str]:
    for cmd in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "true"],
                                                   capture_output=True, check=False).returncode == 0:
            return cmd
    print("note: cannot create a network namespace here; installing with the network up",
          file=sys.stderr)
    return []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--port", type=int, default=11500)
    a = ap.parse_args()
    work = (a.workdir or Path(tempfile.mkdtemp(prefix="llmcrate-demo-"))).resolve()
    spec_dir, media, prefix = work / "spec", work / "media", work / "opt"
    spec_dir.mkdir(parents=True, exist_ok=True)
    for f in ("demo.yaml", "Modelfile.tiny", "Modelfile.bot"):
        shutil.copy(ROOT / "examples" / "bundles" / f, spec_dir / f)
    gguf = write_tiny_gguf(spec_dir / "tiny.gguf")
    print(f"demo workdir: {work}\n[online] generated {gguf.name}: {gguf.stat().st_size} bytes")

    llmcrate = str(Path(sys.executable).with_name("llmcrate"))
    env = dict(os.environ, OLLAMA_MODELS=str(work / "build-store"), OLLAMA_HOST="127.0.0.1:9")
    (work / "out").mkdir(exist_ok=True)
    run([llmcrate, "bundle", "build", str(spec_dir / "demo.yaml"), "-o", str(work / "out")],
        env=env, title="[online] pull/create the models, pack runtime + wheels + scripts")
    (tar,) = (work / "out").glob("demo-*.tar")
    run([llmcrate, "bundle", "verify", str(tar)], env=env, title="[online] check every digest")

    print(f"\n[scp] extracting {tar.name} ({tar.stat().st_size / 1e6:.0f} MB) into {media}")
    shutil.rmtree(media, ignore_errors=True)
    media.mkdir(parents=True)
    subprocess.run(["tar", "-xf", str(tar), "-C", str(media)], check=True)
    bundle = next(media.iterdir())

    ns = netns()
    print(f"\n[offline] {' '.join(ns) or '(no namespace)'}: install.sh --prefix {prefix} "
          f"--no-systemd, start, chat", flush=True)
    # the host's own python3 of the build's version, never this venv's
    base_bin = str(Path(sys._base_executable).resolve().parent)  # type: ignore[attr-defined]
    off_env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OLLAMA_", "LLMCRATE_", "PYTHON", "VIRTUAL_ENV"))}
    off_env.update(PATH=f"{base_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   BUNDLE=str(bundle), PREFIX=str(prefix), WORK=str(work), PORT=str(a.port))
    r = subprocess.run([*ns, "sh", "-c", OFFLINE], env=off_env, check=False)
    if r.returncode != 0:
        print(f"\ndemo failed; logs in {work} (install.log, serve.log)", file=sys.stderr)
        return 1
    print(f"""
where everything went:
  bundle        {tar}
  extracted     {bundle}
  installed     {prefix}/bin/llmcrate, {prefix}/lib/llmcrate/ (python, runtimes, start.sh, uninstall.sh)
  settings      {prefix}/etc/llmcrate/llmcrate.env
  models        {prefix}/var/lib/llmcrate/models (Ollama layout)
  logs          {work}/install.log, {work}/serve.log
start it again: {prefix}/lib/llmcrate/start.sh      remove it: {prefix}/lib/llmcrate/uninstall.sh --yes""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
