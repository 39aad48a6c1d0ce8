"""What the build puts in each binary (issue 13): the sandboxed children
link none of the parent's configuration and rules file readers."""

import os
import subprocess

from postfix import PROJECT_ROOT, build_dir


def test_children_link_no_file_readers():
    p = subprocess.run(["sh", os.path.join(PROJECT_ROOT, "tests",
                                           "check-child-symbols.sh"),
                        build_dir()],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    assert p.returncode == 0, p.stdout.decode()
