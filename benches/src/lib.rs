//! Harnesses shared by the criterion benches, kept here so `cargo test` checks them: a bench
//! that measured a broken pipeline would publish a meaningless figure.

pub mod ring {
    //! The ring-throughput bench: a producer copying frames into a `FrameRing` and two lossless
    //! consumers, beside a plain `memcpy` of the same bytes.

    use std::hint::black_box;
    use std::time::{Duration, Instant};

    use acq_core::geometry::Geometry;
    use acq_core::ring::{FrameRing, Policy, RingConfig, SlotBuffers, SlotParts};
    use acq_core::wait::ParkWait;

    /// Ring capacity in frames.
    pub const SLOTS: usize = 1024;
    /// Frames per grant and per read.
    pub const BATCH: usize = 64;

    /// Moves `frames` frames through a fresh ring with two lossless consumer threads. Returns the
    /// elapsed time and, per consumer, the frames it saw and the sum of the first and last MCA word
    /// of each (so a test can check that every frame arrived with its content).
    pub fn ring_run(
        geometry: Geometry,
        storage: &mut SlotBuffers,
        source: &[u32],
        frames: u64,
    ) -> (Duration, [(u64, u64); 2]) {
        let ring = FrameRing::new(
            geometry,
            RingConfig {
                slots: SLOTS,
                batch: BATCH,
            },
            [Policy::Lossless, Policy::Lossless],
            storage.memory(),
            ParkWait::new(),
        )
        .expect("ring");
        let (mut producer, consumers) = ring.split().expect("split");
        let mw = geometry.mca_words();
        let sw = geometry.scaler_words();
        let start = Instant::now();
        let seen = std::thread::scope(|s| {
            let handles = consumers.map(|mut consumer| {
                s.spawn(move || {
                    let mut expected = 0u64;
                    let mut sum = 0u64;
                    while consumer.wait_available(BATCH as u64) > 0 {
                        let Some(grant) = consumer.read(BATCH) else {
                            continue;
                        };
                        let mca = grant.mca();
                        for (i, meta) in grant.meta().iter().enumerate() {
                            assert_eq!(meta.frame_number, expected);
                            sum += (mca[i * mw] + mca[(i + 1) * mw - 1]) as u64;
                            expected += 1;
                        }
                        let n = grant.len();
                        grant.release(n);
                    }
                    (expected, sum)
                })
            });
            let mut sent = 0u64;
            while sent < frames {
                let mut grant = producer
                    .grant_blocking((frames - sent).min(BATCH as u64) as usize)
                    .expect("grant");
                let n = grant.len();
                let SlotParts {
                    mca, scalers, meta, ..
                } = grant.parts_mut();
                mca.copy_from_slice(&source[..n * mw]);
                scalers.copy_from_slice(&source[..n * sw]);
                for (i, m) in meta.iter_mut().enumerate() {
                    m.frame_number = sent + i as u64;
                }
                grant.commit(n);
                sent += n as u64;
            }
            producer.close();
            handles.map(|h| h.join().expect("consumer thread"))
        });
        (start.elapsed(), seen)
    }

    /// The baseline: the same bytes copied in the same batches into ring-sized memory, one thread.
    pub fn memcpy_run(
        geometry: Geometry,
        storage: &mut SlotBuffers,
        source: &[u32],
        frames: u64,
    ) -> Duration {
        let mw = geometry.mca_words();
        let sw = geometry.scaler_words();
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < frames {
            let n = (frames - sent).min(BATCH as u64) as usize;
            let slot = (sent % SLOTS as u64) as usize;
            storage.mca[slot * mw..(slot + n) * mw].copy_from_slice(&source[..n * mw]);
            storage.scalers[slot * sw..(slot + n) * sw].copy_from_slice(&source[..n * sw]);
            sent += n as u64;
        }
        black_box(&storage.mca);
        start.elapsed()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn every_frame_reaches_both_consumers_with_its_content() {
            let geometry = Geometry::new(2, 16).unwrap();
            let source: Vec<u32> = (0..(BATCH * geometry.mca_words()) as u32).collect();
            let mut storage = SlotBuffers::new(geometry, SLOTS);
            let frames = 3 * SLOTS as u64 + 17;
            let (_, seen) = ring_run(geometry, &mut storage, &source, frames);
            // Frame i of a batch starts at word i * mca_words of the source.
            let mw = geometry.mca_words() as u64;
            let per_batch: u64 = (0..BATCH as u64).map(|i| i * mw + (i + 1) * mw - 1).sum();
            let full = frames / BATCH as u64;
            let rest: u64 = (0..frames % BATCH as u64)
                .map(|i| i * mw + (i + 1) * mw - 1)
                .sum();
            for (count, sum) in seen {
                assert_eq!(count, frames);
                assert_eq!(sum, full * per_batch + rest);
            }
            storage.mca.fill(0);
            memcpy_run(geometry, &mut storage, &source, frames);
            let batch_words = BATCH * geometry.mca_words();
            assert_eq!(&storage.mca[..batch_words], &source[..batch_words]);
        }
    }
}
