//! [`RedisServer`]: a real `redis-server` of a test's own, on a free loopback port, stopped
//! when dropped. Never a shared instance: tests that share health must not see each other.

use std::io::{self, BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a server may take to accept connections after it was started.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` process listening on `127.0.0.1`, with nothing saved to disk.
///
/// [`RedisServer::start`] returns `None`, with the reason, when there is no `redis-server`
/// (looked for in `LLM_TOWER_REDIS_SERVER`, then on `PATH`): a test then says it skipped.
///
/// ```no_run
/// use llm_tower_mock::RedisServer;
///
/// let mut redis = match RedisServer::start() {
///     Ok(redis) => redis,
///     Err(reason) => return eprintln!("skipped: {reason}"),
/// };
/// println!("{}", redis.url());
/// redis.stop(); // gone: clients see it down
/// redis.restart().unwrap(); // back on the same port, empty
/// ```
#[derive(Debug)]
pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// Why it could not: no `redis-server` binary, or it did not come up.
    pub fn start() -> Result<Self, String> {
        let binary = find_binary()?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|err| format!("no free port: {err}"))?
            .port();
        let mut server = Self {
            binary,
            port,
            child: None,
        };
        server.restart().map_err(|err| err.to_string())?;
        Ok(server)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (like a crash: nothing is saved).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits until it accepts connections.
    ///
    /// # Errors
    ///
    /// It could not be started, or did not accept connections within 10 s.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop();
        let mut child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let log = child.stdout.take().expect("piped");
        self.child = Some(child);
        // The server logs a line when it accepts connections; the log is read to its end so
        // that the server never blocks on a full pipe.
        let (ready, is_ready) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(log).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = ready.send(());
                }
            }
        });
        is_ready
            .recv_timeout(STARTUP)
            .map_err(|_| io::Error::other("redis-server did not become ready (see its log above)"))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn find_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("LLM_TOWER_REDIS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "no redis-server on PATH (install it, e.g. `apt-get install redis-server`, or name \
             it in LLM_TOWER_REDIS_SERVER)"
                .to_owned()
        })
}
