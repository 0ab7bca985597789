//! A TCP forwarder that adds a fixed one-way delay to every byte in both directions, without
//! limiting throughput: what `tc netem delay` does to a link, for kernels without netem
//! (`scripts/netbench` falls back to it, running it in the database's network namespace).
//!
//! Each chunk read is written to the other side `one_way` after it arrived, in order; chunks
//! in flight overlap, so a stream of requests is delayed, not serialized. Plain threads, not
//! the async runtime: its timers tick by the millisecond, which would turn a 0.25 ms delay into
//! up to a whole one; a thread's sleep ends within tens of microseconds.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Accepts on `listener` and forwards each connection to `target` with `one_way` added each
/// way, until the process ends.
pub fn forward_with_delay(listener: &TcpListener, target: &str, one_way: Duration) {
    for client in listener.incoming().flatten() {
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let (Ok(client_out), Ok(server_out)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        std::thread::spawn(move || pump(client, server_out, one_way));
        std::thread::spawn(move || pump(server, client_out, one_way));
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
fn pump(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer = std::thread::spawn(move || {
        for (at, bytes) in due {
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if chunks
                    .send((Instant::now() + delay, buffer[..n].to_vec()))
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(chunks);
    let _ = writer.join();
}
