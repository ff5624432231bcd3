//! A client for an instance's interactive serial console (the unix socket QEMU serves for
//! ttyS0, see [`crate::qemu::VmDir::serial`]): run a shell command in the guest and read
//! what it printed. Operators reach a guest this way when its network is broken; tests and
//! the benchmarks use it to look inside guests.
//!
//! It assumes a shell on the console (the tiny image leaves a root shell there; a real
//! image's getty needs a login first). Output is found between two markers the guest's
//! shell computes (`S7S` from `S$((7))S`), so neither the echo of the typed command nor the
//! terminal's line wrapping can be mistaken for them.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub struct SerialShell {
    stream: UnixStream,
    buf: String,
    n: u64,
}

impl SerialShell {
    pub async fn connect(path: &Path) -> anyhow::Result<SerialShell> {
        let stream = UnixStream::connect(path)
            .await
            .with_context(|| format!("serial console {}", path.display()))?;
        Ok(SerialShell {
            stream,
            buf: String::new(),
            n: 0,
        })
    }

    /// Run `cmd` and return what it printed (stdout and stderr, lines joined by `\n`,
    /// trimmed), or fail after `timeout`.
    pub async fn run(&mut self, cmd: &str, timeout: Duration) -> anyhow::Result<String> {
        self.n += 1;
        let n = self.n;
        let line = format!("echo S$(({n}))S; {cmd}; echo F$(({n}))F\n");
        self.stream.write_all(line.as_bytes()).await?;
        let (begin, end) = (format!("S{n}S"), format!("F{n}F"));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(b) = self.buf.find(&begin) {
                if let Some(e) = self.buf[b..].find(&end) {
                    let out = self.buf[b + begin.len()..b + e].replace('\r', "");
                    self.buf.drain(..b + e + end.len());
                    return Ok(out.trim().to_string());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            anyhow::ensure!(
                !left.is_zero(),
                "no answer to {cmd:?} within {timeout:?}; the console showed:\n{}",
                self.buf
            );
            let mut chunk = [0u8; 4096];
            if let Ok(r) = tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
                let k = r?;
                anyhow::ensure!(k > 0, "the serial console closed");
                self.buf.push_str(&String::from_utf8_lossy(&chunk[..k]));
            }
        }
    }
}
