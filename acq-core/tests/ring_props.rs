//! Property tests: random interleavings of producer and consumer operations. Per consumer, no
//! frame is delivered twice and order is kept; lossless consumers see every frame; for lossy ones
//! delivered + dropped = committed; every frame read carries the content written for it.

use acq_core::geometry::{FrameMeta, Geometry};
use acq_core::ring::{FrameRing, Policy, RingConfig, SlotMemory, SlotMemorySize, SlotParts};
use acq_core::wait::BusyWait;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Grant up to `max`, commit `commit` of them (clamped to the grant).
    Produce { max: usize, commit: usize },
    /// Consumer reads up to `max`, releases `release` (clamped).
    Consume {
        consumer: usize,
        max: usize,
        release: usize,
    },
    /// Consumer skips to the newest `keep` frames (lossy only has an effect).
    Skip { consumer: usize, keep: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1usize..6, 0usize..6).prop_map(|(max, commit)| Op::Produce { max, commit }),
        4 => (0usize..3, 1usize..6, 0usize..6)
            .prop_map(|(consumer, max, release)| Op::Consume { consumer, max, release }),
        1 => (0usize..3, 0u64..3).prop_map(|(consumer, keep)| Op::Skip { consumer, keep }),
    ]
}

fn policies() -> impl Strategy<Value = [Policy; 3]> {
    let p = prop_oneof![Just(Policy::Lossless), Just(Policy::Lossy)];
    [p.clone(), p.clone(), p]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn ring_keeps_its_invariants(
        slots_in_batches in 1usize..4,
        batch in 1usize..4,
        policies in policies(),
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let slots = slots_in_batches * batch;
        let geometry = Geometry::new(1, 3).unwrap();
        let size = SlotMemorySize::new(geometry, slots);
        let mut mca = vec![0u32; size.mca_words];
        let mut scalers = vec![0u32; size.scaler_words];
        let mut meta = vec![FrameMeta::default(); size.meta_records];
        let memory = SlotMemory { mca: &mut mca, scalers: &mut scalers, rois: &mut [], meta: &mut meta };
        let ring = FrameRing::new(geometry, RingConfig { slots, batch }, policies, memory, BusyWait)
            .unwrap();
        let (mut producer, mut consumers) = ring.split().unwrap();
        let mut committed = 0u64;
        let mut delivered: [Vec<u64>; 3] = Default::default();

        let read = |consumers: &mut [acq_core::ring::Consumer<'_, '_, BusyWait, 3>; 3],
                        delivered: &mut [Vec<u64>; 3],
                        i: usize, max: usize, release: usize| {
            if let Some(grant) = consumers[i].read(max) {
                prop_assert!(grant.len() <= max);
                for (k, m) in grant.meta().iter().enumerate() {
                    let seq = grant.first_position() + k as u64;
                    prop_assert_eq!(m.frame_number, seq);
                    prop_assert!(grant.mca()[k * 3..k * 3 + 3].iter().all(|&w| w == seq as u32));
                    prop_assert!(grant.scalers()[k * 9..k * 9 + 9].iter().all(|&w| w == !(seq as u32)));
                }
                let n = release.min(grant.len());
                delivered[i].extend((0..n as u64).map(|k| grant.first_position() + k));
                grant.release(n);
            }
            Ok(())
        };

        for op in ops {
            match op {
                Op::Produce { max, commit } => {
                    if let Some(mut grant) = producer.grant(max) {
                        prop_assert!(grant.len() <= max);
                        let first = grant.first_position();
                        prop_assert_eq!(first, committed);
                        let n = grant.len();
                        let SlotParts { mca: m, scalers: s, meta, .. } = grant.parts_mut();
                        for k in 0..n {
                            let seq = first + k as u64;
                            m[k * 3..k * 3 + 3].fill(seq as u32);
                            s[k * 9..k * 9 + 9].fill(!(seq as u32));
                            meta[k].frame_number = seq;
                        }
                        let c = commit.min(n);
                        grant.commit(c);
                        committed += c as u64;
                    }
                }
                Op::Consume { consumer, max, release } => {
                    read(&mut consumers, &mut delivered, consumer, max, release)?;
                }
                Op::Skip { consumer, keep } => {
                    consumers[consumer].skip_to_latest(keep);
                }
            }
            // The producer never gets more than one lap ahead of a lossless consumer.
            let stats = ring.stats();
            prop_assert_eq!(stats.committed, committed);
            for c in stats.consumers.iter() {
                prop_assert!(c.position <= committed);
                if c.policy == Policy::Lossless {
                    prop_assert!(committed - c.position <= slots as u64);
                }
            }
        }

        // Drain everything.
        for i in 0..3 {
            while consumers[i].available() > 0 {
                read(&mut consumers, &mut delivered, i, slots, slots)?;
            }
        }
        let stats = ring.stats();
        for i in 0..3 {
            let seen = &delivered[i];
            prop_assert!(seen.windows(2).all(|w| w[0] < w[1]), "order or duplicate: {:?}", seen);
            let c = stats.consumers[i];
            prop_assert_eq!(c.delivered, seen.len() as u64);
            prop_assert_eq!(c.delivered + c.dropped, committed);
            if policies[i] == Policy::Lossless {
                prop_assert_eq!(seen.clone(), (0..committed).collect::<Vec<_>>());
                prop_assert_eq!(c.dropped, 0);
            }
        }
    }
}
