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

#[cfg(test)]
mod tests {
    use super::*;

    /// An echo server on a free port; its address.
    fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address").to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = stream.try_clone().expect("clone");
                    let mut writer = stream;
                    let _ = std::io::copy(&mut reader, &mut writer);
                });
            }
        });
        address
    }

    #[test]
    fn every_byte_is_delayed_each_way_and_arrives_intact_and_in_order() {
        let target = echo_server();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        let one_way = Duration::from_millis(30);
        std::thread::spawn(move || forward_with_delay(&listener, &target, one_way));

        let mut client = TcpStream::connect(address).expect("connect");
        let sent: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        let mut writer = client.try_clone().expect("clone");
        let to_send = sent.clone();
        let sender = std::thread::spawn(move || writer.write_all(&to_send).expect("send"));
        let mut received = vec![0u8; sent.len()];
        client.read_exact(&mut received).expect("echo");
        let round_trip = started.elapsed();
        sender.join().expect("sender");
        assert!(
            received == sent,
            "the bytes came back changed or out of order"
        );
        // A lower bound only: the delay is there. How close to it the forwarder stays is what
        // scripts/netbench's figures depend on, not something a test can promise.
        assert!(round_trip >= one_way * 2, "came back after {round_trip:?}");
    }
}
