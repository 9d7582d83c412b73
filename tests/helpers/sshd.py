"""A real OpenSSH server on 127.0.0.1 for the ssh:// tests, with its own keys and config.

One per test session (:func:`start_sshd`): a throw-away host key and user key, sshd on a free
port with ``-f`` its own config (no PAM, keys only, StrictModes off, authorized keys in the
temp dir), a known_hosts holding its host key (host keys are checked, as in life), and an
ssh_config whose ``Host`` aliases ``h1``..``h5`` are several "hosts" on it. ``hb`` lands on a
second port whose sessions find ``jrpc-unix`` on their PATH (so the remote side is the bridge);
``cm`` shares one connection (ControlMaster). A second, unprivileged login user
(:data:`REMOTE_USER`) is created when missing (the tests run as root, as CI does).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from . import TIMEOUT, wait_for

SSHD = "/usr/sbin/sshd"
#: The unprivileged login user of the access-level tests.
REMOTE_USER = "jrpc-remote"


@dataclass
class Sshd:
    dir: Path
    port: int
    bridge_port: int
    config: Path  # the client's ssh_config
    user_key: Path
    process: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        """The environment that makes jrpc-unix use this ssh_config."""
        return {**os.environ, "JRPC_UNIX_SSH": f"ssh -F {self.config}"}

    def authorize(self, user: str, line: str) -> None:
        """Add an authorized_keys line for ``user`` (it may carry options: a forced command)."""
        keys = self.dir / "keys" / user
        with keys.open("a") as out:
            out.write(line + "\n")
        keys.chmod(0o644)

    def public_key(self) -> str:
        return self.user_key.with_suffix(".pub").read_text().strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def available() -> str | None:
    """Why the sshd tests cannot run here, or None."""
    if not os.path.exists(SSHD) or shutil.which("ssh") is None:
        return "OpenSSH (openssh-server, openssh-client) is not installed; .ci/run installs it"
    if os.getuid() != 0:
        return "sshd for other login users needs root (CI runs as root)"
    return None


def ensure_remote_user() -> None:
    """The second login user: a shell, no password, and not locked (sshd refuses a locked one)."""
    try:
        pwd.getpwnam(REMOTE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--home-dir", "/", "--shell", "/bin/sh", REMOTE_USER],
            check=True,
            capture_output=True,
        )
    subprocess.run(["usermod", "--password", "*", REMOTE_USER], check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def start_sshd(base: Path) -> Sshd:
    """Keys, configs and a running sshd under ``base`` (world-readable: other users log in)."""
    ensure_remote_user()
    base.chmod(0o755)
    (base / "keys").mkdir()
    (base / "bin").mkdir()
    (base / "bin" / "jrpc-unix").symlink_to(Path(sys.executable).parent / "jrpc-unix")
    _keygen(base / "host_key")
    _keygen(base / "user_key")
    port, bridge_port = _free_port(), _free_port()
    (base / "sshd_config").write_text(
        f"""Port {port}
Port {bridge_port}
ListenAddress 127.0.0.1
HostKey {base}/host_key
PidFile none
AuthorizedKeysFile {base}/keys/%u
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowStreamLocalForwarding yes
LogLevel INFO
Match LocalPort {bridge_port}
    SetEnv PATH={base}/bin:/usr/local/bin:/usr/bin:/bin
"""
    )
    host_key = (base / "host_key.pub").read_text().split()
    (base / "known_hosts").write_text(
        "".join(f"[127.0.0.1]:{p} {host_key[0]} {host_key[1]}\n" for p in (port, bridge_port))
    )
    common = f"""  HostName 127.0.0.1
  User root
  IdentityFile {base}/user_key
  IdentitiesOnly yes
  UserKnownHostsFile {base}/known_hosts
  StrictHostKeyChecking yes
  LogLevel ERROR
"""
    (base / "ssh_config").write_text(
        f"Host h1 h2 h3 h4 h5\n  Port {port}\n{common}"
        f"Host hb\n  Port {bridge_port}\n{common}"
        f"Host cm\n  Port {port}\n{common}  ControlMaster auto\n  ControlPath {base}/cm-%C\n"
        "  ControlPersist 60\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # its privilege-separation directory
    log = base / "sshd.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(base / "sshd_config")], stdout=out, stderr=out
        )
    sshd = Sshd(base, port, bridge_port, base / "ssh_config", base / "user_key", process)
    try:
        wait_for(lambda: log.read_text().count("Server listening") >= 2 or process.poll() is not None, "sshd")
        assert process.poll() is None, log.read_text()
    except BaseException:
        sshd.stop()
        raise
    sshd.authorize("root", sshd.public_key())
    sshd.authorize(REMOTE_USER, sshd.public_key())
    return sshd
