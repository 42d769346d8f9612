"""genmod.hugepages: when the glibc tunable is added, and that re-executing keeps the process."""
import os
import subprocess
import sys

from genmod import hugepages

LINUX = ("linux", (2, 36), "madvise")


def test_the_tunable_is_added_only_where_it_changes_something():
    new = hugepages.env_with_hugepages({"A": "1"}, *LINUX)
    assert new == {"A": "1", "GLIBC_TUNABLES": hugepages.TUNABLE}
    # the user's other tunables are kept, in front
    assert hugepages.env_with_hugepages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, *LINUX)[
        "GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:" + hugepages.TUNABLE
    assert hugepages.env_with_hugepages({}, "linux", (2, 36), "always") is not None
    for env, machine in [({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, LINUX),  # the user's choice
                         ({"GLIBC_TUNABLES": hugepages.TUNABLE}, LINUX),  # already set: no loop
                         ({hugepages.OPT_OUT: "0"}, LINUX),
                         ({}, ("darwin", None, "")), ({}, ("linux", None, "madvise")),  # musl
                         ({}, ("linux", (2, 34), "madvise")), ({}, ("linux", (2, 36), "never"))]:
        assert hugepages.env_with_hugepages(env, *machine) is None, (env, machine)


def test_reexec_keeps_pid_and_arguments_and_adds_the_tunable_once():
    code = ("import os, sys; from genmod import hugepages; hugepages.reexec(); "
            "print(os.getpid(), os.environ.get('GLIBC_TUNABLES', ''), sys.argv[1:])")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", hugepages.OPT_OUT)}
    proc = subprocess.Popen([sys.executable, "-c", code, "a b", "--x"], env=env, stdout=subprocess.PIPE, text=True)
    out = proc.communicate(timeout=60)[0].split(" ", 2)
    assert proc.returncode == 0 and out[0] == str(proc.pid) and out[2].strip() == "['a b', '--x']"
    expected = hugepages.TUNABLE if hugepages.env_with_hugepages(env, *hugepages.machine()) else ""
    assert out[1] == expected
    env[hugepages.OPT_OUT] = "0"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60).stdout
    assert out.split(" ")[1] == ""
