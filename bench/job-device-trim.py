#!/usr/bin/env python3
"""Cuts a lean runtime (bin/lean-runtime's tar.xz) down for one device payload of bench/job-device.sh.

    bench/job-device-trim.py RUNTIME.tar.xz OUT.tar.xz TRACE_LOG...

The lean runtime keeps whole packages of every jar the test suite loaded from (24.5 MB of tar.xz),
more than a payload of the lead's shared device call may carry (16 MB). This keeps, in each runtime
jar of 1 MB or more (uncompressed), only the classes that the given class-load traces
(-Xlog:class+load of the split job, a directory job and the benches, run here on the CPU) or
conf/lean-runtime-tables.classes (the table runs and the safetensors job) name, with their nested
classes (in Spark's own jars, every class of their packages), and Scala's immutable collections whole (which of them a run loads depends on the sizes it
meets; see bin/lean-runtime); smaller jars and every non-class resource stay whole. It also takes the
PTX out of the application jar: the payload's run.sh puts the checkout's back (the device call runs
from a checkout, whose gpu-worker resources hold the same files). Like the tables profile, this is
for carrying the job to a machine for a benchmark, not for production: an error path no traced run
took may meet a NoClassDefFoundError.
"""
import os
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile

HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CUT_FROM = 1 << 20
WHOLE_PACKAGES = ("scala/collection/immutable/",)
WHOLE_JARS = ("lz4-java-", "jcuda-")
# Spark's own jars keep every class of each package a trace or list names: a GPU task takes paths the
# CPU traces here cannot (ExecutorBackends asks the task for its GPU resource, whose
# org.apache.spark.resource.ResourceInformation no CPU run loads)
WHOLE_PACKAGES_OF = ("spark-",)
PTX = re.compile(r"^dev/lightning/attention/engine/cuda/.*\.ptx$")
LOADED = re.compile(r"\[class,load\] (\S+) source: (?:jar:)?file:.*/lib/([^/!]+\.jar)")


def traced(logs):
    """jar -> the entry names (a/b/C, no $ part) of the classes loaded from it."""
    by_jar = {}
    for log in logs:
        with open(log, errors="replace") as f:
            for line in f:
                m = LOADED.search(line)
                if m:
                    by_jar.setdefault(m.group(2), set()).add(m.group(1).replace(".", "/").split("$")[0])
    with open(os.path.join(HOME, "conf", "lean-runtime-tables.classes")) as f:
        for line in f:
            if line.strip() and not line.startswith("#"):
                jar, name = line.split()
                by_jar.setdefault(jar, set()).add(name.replace(".", "/").split("$")[0])
    return by_jar


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    src, out, logs = sys.argv[1], sys.argv[2], sys.argv[3:]
    keep_classes = traced(logs)
    stage = tempfile.mkdtemp(prefix="job-device-trim.")
    try:
        with tarfile.open(src) as t:
            t.extractall(stage)
        target = os.path.join(stage, "spark-job", "target")
        before = after = 0
        for jar in sorted(os.listdir(os.path.join(target, "lib"))):
            path = os.path.join(target, "lib", jar)
            with zipfile.ZipFile(path) as z:
                size = sum(e.file_size for e in z.infolist())
            before += size
            if size < CUT_FROM or jar.startswith(WHOLE_JARS):
                after += size
                continue
            wanted = keep_classes.get(jar, set())
            packages = {c.rsplit("/", 1)[0] for c in wanted}
            cut = path + ".cut"
            with zipfile.ZipFile(path) as zin, zipfile.ZipFile(cut, "w", zipfile.ZIP_STORED) as zout:
                for e in zin.infolist():
                    name = e.filename
                    if name.endswith(".class"):
                        plain = re.sub(r"^META-INF/versions/\d+/", "", name)[:-len(".class")]
                        if not (plain.split("$")[0] in wanted or plain.startswith(WHOLE_PACKAGES)
                                or jar.startswith(WHOLE_PACKAGES_OF) and plain.rsplit("/", 1)[0] in packages):
                            continue
                    zout.writestr(e, zin.read(name), compress_type=zipfile.ZIP_STORED)
                    after += e.file_size
            os.replace(cut, path)
        apps = [f for f in os.listdir(target) if f.endswith("-app.jar")]
        for app in apps:
            path = os.path.join(target, app)
            cut = path + ".cut"
            with zipfile.ZipFile(path) as zin, zipfile.ZipFile(cut, "w", zipfile.ZIP_DEFLATED) as zout:
                for e in zin.infolist():
                    if not PTX.match(e.filename):
                        zout.writestr(e, zin.read(e.filename))
            os.replace(cut, path)
        with tarfile.open(out, "w:xz", preset=9) as t:
            t.add(os.path.join(stage, "spark-job"), arcname="spark-job")
        print("job-device-trim: %s: %.1f MB (jars %.1f MB -> %.1f MB uncompressed; PTX taken out of %s)"
              % (out, os.path.getsize(out) / 1e6, before / 1e6, after / 1e6, ", ".join(apps)))
    finally:
        shutil.rmtree(stage, ignore_errors=True)


if __name__ == "__main__":
    main()
