//! `netdelay LISTEN TARGET ONE_WAY_MS`: forwards TCP connections accepted on `LISTEN` to
//! `TARGET`, adding `ONE_WAY_MS` (fractions allowed) each way. See `testkit::latency`.

use std::time::Duration;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, target, one_way] = args.as_slice() else {
        anyhow::bail!("usage: netdelay LISTEN_ADDR TARGET_ADDR ONE_WAY_MS");
    };
    let one_way: f64 = one_way.parse().map_err(|_| {
        anyhow::anyhow!("ONE_WAY_MS must be a number of milliseconds, got {one_way:?}")
    })?;
    anyhow::ensure!(
        (0.0..=10_000.0).contains(&one_way),
        "ONE_WAY_MS must be from 0 to 10000"
    );
    let listener = std::net::TcpListener::bind(listen)?;
    testkit::latency::forward_with_delay(
        &listener,
        target,
        Duration::from_secs_f64(one_way / 1000.0),
    );
    Ok(())
}
