//! Pushing through a small fault-injecting HTTP proxy in front of a real
//! registry: answers of 500 and dropped connections are retried and the image
//! arrives intact; a push cut off half-way never leaves its tag naming missing
//! blobs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::*;
use super::registry::registry_and_hello;

/// What the proxy does wrong.
#[derive(Clone, Copy)]
enum Mode {
    /// Every `every`th request, up to `max` of them, alternately answered 500
    /// or dropped without an answer.
    Faults { every: usize, max: usize },
    /// Blob upload bodies stop being read once this many of their bytes went
    /// through.
    StallUploadsAfter(u64),
}

struct State {
    upstream: u16,
    mode: Mode,
    requests: AtomicUsize,
    faults: AtomicUsize,
    upload_bytes: AtomicU64,
    stalled: AtomicBool,
    stop: AtomicBool,
}

/// An HTTP/1.1 proxy on a free local port; each request gets its own upstream
/// connection (it adds `Connection: close`), which keeps the counting simple.
struct FaultProxy {
    port: u16,
    state: Arc<State>,
}

impl FaultProxy {
    fn start(upstream: u16, mode: Mode) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            upstream,
            mode,
            requests: AtomicUsize::new(0),
            faults: AtomicUsize::new(0),
            upload_bytes: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(client) = client {
                    let state = shared.clone();
                    std::thread::spawn(move || handle(client, state));
                }
            }
        });
        FaultProxy { port, state }
    }

    fn image(&self, name: &str) -> String {
        format!("docker://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn handle(mut client: TcpStream, state: Arc<State>) {
    let mut first = [0u8; 1];
    if client.peek(&mut first).unwrap_or(0) == 0 {
        return;
    }
    let Ok(mut upstream) = TcpStream::connect(("127.0.0.1", state.upstream)) else {
        return;
    };
    // A TLS handshake (the client trying HTTPS first) goes through untouched.
    if first[0] == 0x16 {
        let (Ok(client_in), Ok(upstream_in)) = (client.try_clone(), upstream.try_clone()) else {
            return;
        };
        std::thread::spawn(move || pipe(client_in, upstream_in, None));
        pipe(upstream, client, None);
        return;
    }
    let Some(head) = read_head(&mut client) else {
        return;
    };
    let number = state.requests.fetch_add(1, Ordering::SeqCst) + 1;
    if let Mode::Faults { every, max } = state.mode {
        if number % every == 0 && state.faults.load(Ordering::SeqCst) < max {
            let fault = state.faults.fetch_add(1, Ordering::SeqCst);
            if fault % 2 == 0 {
                let _ = client.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 8\r\nConnection: close\r\n\r\ninjected",
                );
            }
            let _ = client.shutdown(Shutdown::Both);
            return;
        }
    }
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let is_upload = (request_line.starts_with("PATCH ") || request_line.starts_with("PUT "))
        && request_line.contains("/blobs/uploads/");
    let mut rewritten: String = head
        .split("\r\n")
        .filter(|line| !line.is_empty() && !line.to_ascii_lowercase().starts_with("connection:"))
        .map(|line| format!("{line}\r\n"))
        .collect();
    rewritten.push_str("Connection: close\r\n\r\n");
    if upstream.write_all(rewritten.as_bytes()).is_err() {
        return;
    }
    let (Ok(client_in), Ok(upstream_in)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let stall = match state.mode {
        Mode::StallUploadsAfter(limit) if is_upload => Some(limit),
        _ => None,
    };
    let state = state.clone();
    std::thread::spawn(move || pipe(client_in, upstream_in, stall.map(|l| (l, state))));
    pipe(upstream, client, None);
}

/// Reads up to the end of the request head, byte by byte.
fn read_head(client: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).ok()
}

/// Copies `from` into `to` until `from` ends; with a stall limit, stops
/// reading once that many upload bytes went through (and says so).
fn pipe(mut from: TcpStream, mut to: TcpStream, stall: Option<(u64, Arc<State>)>) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
        if let Some((limit, state)) = &stall {
            if state.upload_bytes.fetch_add(n as u64, Ordering::SeqCst) + n as u64 >= *limit {
                state.stalled.store(true, Ordering::SeqCst);
                while !state.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                return;
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

#[test]
fn pushes_through_server_errors_and_dropped_connections() {
    let Some((work, registry, built)) = registry_and_hello() else {
        return;
    };
    let proxy = FaultProxy::start(registry.port, Mode::Faults { every: 3, max: 6 });

    let pushed = run_ok(
        push_built(work.path(), &built, &proxy.image("faulty:v1")).arg("--tls-verify=false"),
    );
    assert_eq!(
        proxy.state.faults.load(Ordering::SeqCst),
        6,
        "not every fault was met"
    );

    let copied = work.path().join("copied");
    registry.skopeo_copy_to_layout("faulty:v1", &copied);
    let manifest = layout_manifest(&built);
    assert_eq!(layout_manifest(&copied), manifest);
    assert_eq!(
        stdout(&pushed).trim(),
        format!(
            "sha256:{}",
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest))
        )
    );
    // skopeo checked every blob against its digest; the config is compared too.
    let config: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let config_hex = config["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    assert_eq!(
        std::fs::read(copied.join("blobs/sha256").join(config_hex)).unwrap(),
        std::fs::read(built.join("blobs/sha256").join(config_hex)).unwrap()
    );
}

#[test]
fn a_push_cut_off_half_way_leaves_no_tag_and_the_next_push_succeeds() {
    let Some((work, registry, built)) = registry_and_hello() else {
        return;
    };
    let manifest: serde_json::Value = serde_json::from_slice(&layout_manifest(&built)).unwrap();
    let layer_bytes: u64 = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["size"].as_u64().unwrap())
        .sum();
    let proxy = FaultProxy::start(registry.port, Mode::StallUploadsAfter(layer_bytes / 2));

    let mut push = push_built(work.path(), &built, &proxy.image("cut:v1"))
        .arg("--tls-verify=false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !proxy.state.stalled.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the upload never reached the stall"
        );
        assert!(
            push.try_wait().unwrap().is_none(),
            "the push ended before the proxy stalled it"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let the uploads beside the stalled one finish what they can.
    std::thread::sleep(Duration::from_millis(500));
    push.kill().unwrap();
    push.wait().unwrap();

    let inspected = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(registry.image("cut:v1"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&inspected.stderr);
    assert!(
        !inspected.status.success(),
        "the tag exists after a cut-off push"
    );
    assert!(said.contains("manifest unknown"), "{said}");

    let pushed = run_ok(
        push_built(work.path(), &built, &registry.image("cut:v1")).arg("--tls-verify=false"),
    );
    let inspected = registry.skopeo_inspect("cut:v1");
    assert_eq!(inspected["Digest"].as_str(), Some(stdout(&pushed).trim()));
}
