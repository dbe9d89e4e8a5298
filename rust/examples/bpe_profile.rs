//! Time encoding and decoding with the plain Rust core, for profiling (`perf record`) without
//! Python: `cargo run --release --example bpe_profile -- RANKS [MERGES] CORPUS [MB] [ROUNDS]`.
//!
//! RANKS is a tiktoken rank file (`<base64 token> <id>` lines); with MERGES (`<left id> <right
//! id>` lines in rank order) the model is built from merges, as a trained llmkit model is.

use base64::Engine;
use llmkit_rust::bpe::Bpe;
use llmkit_rust::pretok::Pretokenizer;

/// Seconds this thread has run on a CPU (`/proc/thread-self/schedstat`): on a shared machine it
/// leaves out the time spent waiting for a core, which wall time does not.
fn cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (ranks, merges, rest) = match args.get(1) {
        Some(m) if m.ends_with(".merges") => (&args[0], Some(m), &args[2..]),
        _ => (&args[0], None, &args[1..]),
    };
    let corpus = &rest[0];
    let mb: f64 = rest.get(1).map_or(20.0, |s| s.parse().expect("MB"));
    let rounds: usize = rest.get(2).map_or(3, |s| s.parse().expect("ROUNDS"));
    let b64 = base64::engine::general_purpose::STANDARD;
    let tokens: Vec<(Vec<u8>, u32)> = std::fs::read_to_string(ranks)
        .expect("rank file")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (t, r) = l.split_once(' ').expect("two fields");
            (b64.decode(t).expect("base64"), r.parse().expect("rank"))
        })
        .collect();
    let specials = vec![("<|endoftext|>".to_string(), 0)];
    let pretok = Pretokenizer::new("gpt2").expect("pattern");
    let bpe = match merges {
        Some(path) => {
            let pairs: Vec<(u32, u32)> = std::fs::read_to_string(path)
                .expect("merges file")
                .lines()
                .map(|l| {
                    let (a, b) = l.split_once(' ').expect("two ids");
                    (a.parse().expect("id"), b.parse().expect("id"))
                })
                .collect();
            Bpe::from_merges(tokens, pairs, specials, pretok, false)
        }
        None => Bpe::from_ranks(tokens, specials, pretok),
    }
    .expect("model");
    let data = std::fs::read(corpus).expect("corpus");
    let mut end = ((mb * 1e6) as usize).min(data.len());
    while end < data.len() && (data[end] & 0xC0) == 0x80 {
        end += 1;
    }
    let text = std::str::from_utf8(&data[..end]).expect("UTF-8 corpus");
    for round in 0..rounds {
        let t = cpu_seconds();
        let ids = bpe.encode_ordinary(text);
        let enc = cpu_seconds() - t;
        let t = cpu_seconds();
        let back = bpe.decode_bytes(&ids).expect("decode");
        let dec = cpu_seconds() - t;
        assert_eq!(back, text.as_bytes());
        let digest = ids.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &i| {
            (h ^ i as u64).wrapping_mul(0x1000_0000_01b3)
        });
        println!(
            "round {round}: {} ids {digest:016x}, encode {:.1} MB/s, decode {:.1} MB/s (CPU time)",
            ids.len(),
            end as f64 / 1e6 / enc,
            end as f64 / 1e6 / dec
        );
    }
}
