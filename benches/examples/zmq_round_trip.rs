//! The REQ/REP round-trip limit of libzmq on this machine, without any server work:
//! a REP socket that answers every request with the same parts (of the sizes given),
//! and a REQ socket asking `next` as a Karabo Bridge client does, each with its own
//! ZeroMQ context (so four threads: two application threads, two I/O threads), over
//! TCP on 127.0.0.1. The bench script `bench_bridge.py` uses it as the ceiling of any
//! REP server's trains per second.
//!
//! Usage: zmq_round_trip REQUESTS PART_SIZE...   (prints `{"round_trips_per_s": R}`)

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let requests: usize = args
        .next()
        .ok_or("usage: zmq_round_trip REQUESTS PART_SIZE...")?
        .parse()?;
    let sizes: Vec<usize> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    if requests < 2 || sizes.is_empty() {
        return Err("need at least 2 requests and one part size".into());
    }
    let parts: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![0x5a; n]).collect();

    let server_ctx = zmq::Context::new();
    let rep = server_ctx.socket(zmq::REP)?;
    // As xfel-serve sets it: with a high-water mark of 1 (karabo-bridge-serve-files'), libzmq
    // now and then drops a reply at these rates and the client waits for ever.
    rep.set_sndhwm(0)?;
    rep.bind("tcp://127.0.0.1:*")?;
    let endpoint = rep
        .get_last_endpoint()?
        .map_err(|_| "endpoint is not UTF-8")?;
    let server = std::thread::spawn(move || -> zmq::Result<()> {
        for _ in 0..requests {
            rep.recv_bytes(0)?;
            rep.send_multipart(parts.iter(), 0)?;
        }
        Ok(())
    });

    let client_ctx = zmq::Context::new();
    let req = client_ctx.socket(zmq::REQ)?;
    req.connect(&endpoint)?;
    // The first round trip includes the connection: not timed.
    req.send("next", 0)?;
    req.recv_multipart(0)?;
    let t0 = Instant::now();
    for _ in 1..requests {
        req.send("next", 0)?;
        req.recv_multipart(0)?;
    }
    let rate = (requests - 1) as f64 / t0.elapsed().as_secs_f64();
    server.join().map_err(|_| "server thread panicked")??;
    println!("{{\"round_trips_per_s\": {rate:.1}}}");
    Ok(())
}
