"""Builds the vmstitch wheel: the pure-Python package python/vmstitch plus the shared library
build/libvmstitch_torch.so (made by the repository's Makefile), copied into the package.

Offline, with setuptools as the only build dependency: `pip install --no-build-isolation .`.
The metadata lives in pyproject.toml. This file plays two parts:

  * run by setuptools (__name__ == "__main__"): setup() with one custom step, `make` and the
    library copied into the package, and the wheel marked platform-specific since it carries
    a compiled library;
  * imported by pip as the PEP 517 build backend (pyproject.toml: build-backend = "setup",
    backend-path = ["."]): it hands everything to setuptools.build_meta, except where this
    setuptools cannot make wheels by itself (older than 70.1 without the `wheel` package
    installed); then it writes the wheel itself (a zip with the package, the library and the
    .dist-info files), so that no other build dependency is ever needed.

VMSTITCH_BUILD names the make build directory to use (default build).
"""
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.abspath(__file__))
LIB = "libvmstitch_torch.so"


def make_library():
    """Runs make for the library; returns its path."""
    build_dir = os.environ.get("VMSTITCH_BUILD", "build")
    target = os.path.join(build_dir, LIB)
    make = os.environ.get("MAKE", "make")
    subprocess.check_call([make, "-j" + str(os.cpu_count() or 1), "BUILD=" + build_dir, target],
                          cwd=ROOT)
    return os.path.join(ROOT, target)


if __name__ == "__main__":  # ------------------------------------------ run by setuptools
    from setuptools import setup
    from setuptools.command.build_py import build_py
    from setuptools.dist import Distribution

    class BuildWithMake(build_py):
        """build_py, after `make` has produced the library, which then goes into the package."""

        def run(self):
            lib = make_library()
            super().run()
            dest = os.path.join(self.build_lib, "vmstitch")
            os.makedirs(dest, exist_ok=True)
            shutil.copy2(lib, os.path.join(dest, LIB))

    class BinaryDistribution(Distribution):
        def has_ext_modules(self):
            return True

    setup(cmdclass={"build_py": BuildWithMake}, distclass=BinaryDistribution)

else:  # ----------------------------------------------------- imported as the build backend
    import base64
    import hashlib
    import re
    import sysconfig
    import zipfile

    from setuptools import build_meta as _sbm

    def _can_bdist_wheel():
        try:
            from setuptools.command.bdist_wheel import bdist_wheel  # noqa: F401 (>= 70.1)
            return True
        except ImportError:
            pass
        try:
            from wheel.bdist_wheel import bdist_wheel  # noqa: F401,F811
            return True
        except ImportError:
            return False

    def _project_field(name):
        with open(os.path.join(ROOT, "pyproject.toml")) as f:
            text = f.read()
        m = re.search(r'^%s\s*=\s*"([^"]*)"' % re.escape(name), text, re.M)
        return m.group(1) if m else ""

    def _record_line(arcname, data):
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return "%s,sha256=%s,%d" % (arcname, digest, len(data))

    def _build_wheel_by_hand(wheel_directory):
        lib = make_library()
        name, version = _project_field("name"), _project_field("version")
        plat = sysconfig.get_platform().replace("-", "_").replace(".", "_")
        tag = "py3-none-" + plat
        wheel_name = "%s-%s-%s.whl" % (name, version, tag)
        dist_info = "%s-%s.dist-info" % (name, version)
        files = []
        pkg = os.path.join(ROOT, "python", "vmstitch")
        for fn in sorted(os.listdir(pkg)):
            if fn.endswith(".py"):
                with open(os.path.join(pkg, fn), "rb") as f:
                    files.append(("vmstitch/" + fn, f.read()))
        with open(lib, "rb") as f:
            files.append(("vmstitch/" + LIB, f.read()))
        meta = ("Metadata-Version: 2.1\nName: %s\nVersion: %s\nSummary: %s\n"
                "Requires-Python: %s\n" % (name, version, _project_field("description"),
                                           _project_field("requires-python")))
        files.append((dist_info + "/METADATA", meta.encode()))
        files.append((dist_info + "/WHEEL", ("Wheel-Version: 1.0\nGenerator: vmstitch setup.py"
                                             "\nRoot-Is-Purelib: false\nTag: %s\n" % tag
                                             ).encode()))
        files.append((dist_info + "/entry_points.txt",
                      b"[console_scripts]\nvmstitch-run = vmstitch.__main__:main\n"))
        files.append((dist_info + "/top_level.txt", b"vmstitch\n"))
        record = [_record_line(n, d) for n, d in files] + [dist_info + "/RECORD,,"]
        files.append((dist_info + "/RECORD", ("\n".join(record) + "\n").encode()))
        os.makedirs(wheel_directory, exist_ok=True)
        with zipfile.ZipFile(os.path.join(wheel_directory, wheel_name), "w",
                             zipfile.ZIP_DEFLATED) as z:
            for arcname, data in files:
                info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if arcname.endswith(".so") else 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)
        return wheel_name

    def get_requires_for_build_wheel(config_settings=None):
        return _sbm.get_requires_for_build_wheel(config_settings) if _can_bdist_wheel() else []

    def get_requires_for_build_sdist(config_settings=None):
        return _sbm.get_requires_for_build_sdist(config_settings)

    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        if _can_bdist_wheel():
            return _sbm.build_wheel(wheel_directory, config_settings, metadata_directory)
        return _build_wheel_by_hand(wheel_directory)

    def build_sdist(sdist_directory, config_settings=None):
        return _sbm.build_sdist(sdist_directory, config_settings)

    if _can_bdist_wheel():  # otherwise pip takes the metadata from the wheel itself
        def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
            return _sbm.prepare_metadata_for_build_wheel(metadata_directory, config_settings)
