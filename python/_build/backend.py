"""A minimal in-tree PEP 517 build backend (stdlib only): builds the pure-Python wheel and
sdist of the agentcage package without fetching setuptools, so installs work offline.

Metadata is read from pyproject.toml with a few regexes (tomllib is 3.11+): keep the
[project] table's `name`, `version`, `description` and `requires-python` one-line strings.
"""

import base64
import hashlib
import io
import os
import re
import tarfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")


def _meta():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    project = text.split("[project]", 1)[1]
    out = {}
    for key in ("name", "version", "description", "requires-python"):
        m = re.search(r'^%s\s*=\s*"([^"]*)"' % re.escape(key), project, re.M)
        if not m:
            raise RuntimeError("pyproject.toml: [project] %s missing" % key)
        out[key] = m.group(1)
    return out


def _metadata_text(m):
    return (
        "Metadata-Version: 2.1\n"
        "Name: %s\nVersion: %s\nSummary: %s\nRequires-Python: %s\nLicense: Apache-2.0\n"
        % (m["name"], m["version"], m["description"], m["requires-python"])
    )


def _files():
    for dirpath, dirnames, filenames in os.walk(SRC):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for fn in sorted(filenames):
            if fn.endswith((".py", ".typed")):
                full = os.path.join(dirpath, fn)
                yield full, os.path.relpath(full, SRC).replace(os.sep, "/")


def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return "%s,sha256=%s,%d" % (path, digest, len(data))


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    m = _meta()
    dist = "%s-%s" % (m["name"], m["version"])
    name = "%s-py3-none-any.whl" % dist
    info = dist + ".dist-info"
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w", zipfile.ZIP_DEFLATED) as z:
        def add(arc, data):
            z.writestr(zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0)), data)
            records.append(_record_line(arc, data))

        for full, arc in _files():
            with open(full, "rb") as f:
                add(arc, f.read())
        add(info + "/METADATA", _metadata_text(m).encode())
        add(
            info + "/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: agentcage-backend\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        records.append(info + "/RECORD,,")
        z.writestr(info + "/RECORD", "\n".join(records) + "\n")
    return name


def build_sdist(sdist_directory, config_settings=None):
    m = _meta()
    dist = "%s-%s" % (m["name"], m["version"])
    name = dist + ".tar.gz"
    with tarfile.open(os.path.join(sdist_directory, name), "w:gz") as t:
        for rel in ("pyproject.toml", "_build/backend.py", "README.md"):
            full = os.path.join(ROOT, rel)
            if os.path.exists(full):
                t.add(full, dist + "/" + rel)
        for full, arc in _files():
            t.add(full, dist + "/src/" + arc)
        pkg = _metadata_text(m).encode()
        ti = tarfile.TarInfo(dist + "/PKG-INFO")
        ti.size = len(pkg)
        t.addfile(ti, io.BytesIO(pkg))
    return name
