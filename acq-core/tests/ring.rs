//! Behaviour of FrameRing: construction, contiguity at the wrap, lossless back-pressure,
//! lossy skipping, counters, static storage and threads.

use acq_core::geometry::{FrameMeta, Geometry};
use acq_core::ring::{
    FrameRing, Policy, RingConfig, RingError, SlotBuffers, SlotParts, StaticFrameStorage,
};
use acq_core::wait::{BusyWait, ParkWait};

fn geometry() -> Geometry {
    Geometry::new(2, 4).unwrap()
}

/// Writes frame `seq` into every word of each granted frame.
fn produce<W: acq_core::wait::Wait, const C: usize>(
    producer: &mut acq_core::ring::Producer<'_, '_, W, C>,
    max: usize,
) -> usize {
    let Some(mut grant) = producer.grant(max) else {
        return 0;
    };
    let first = grant.first_position();
    let n = grant.len();
    let SlotParts {
        mca, scalers, meta, ..
    } = grant.parts_mut();
    let mw = mca.len() / n;
    let sw = scalers.len() / n;
    for i in 0..n {
        let seq = (first + i as u64) as u32;
        mca[i * mw..(i + 1) * mw].fill(seq);
        scalers[i * sw..(i + 1) * sw].fill(seq + 1);
        meta[i].frame_number = seq as u64;
    }
    grant.commit(n);
    n
}

fn assert_frames(mca: &[u32], scalers: &[u32], meta: &[FrameMeta], first: u64) {
    let n = meta.len();
    let mw = mca.len() / n;
    let sw = scalers.len() / n;
    for i in 0..n {
        let seq = first + i as u64;
        assert_eq!(meta[i].frame_number, seq);
        assert!(mca[i * mw..(i + 1) * mw].iter().all(|&w| w == seq as u32));
        assert!(scalers[i * sw..(i + 1) * sw]
            .iter()
            .all(|&w| w == seq as u32 + 1));
    }
}

#[test]
fn construction_validates_batch_and_storage() {
    let g = geometry();
    let mut b = SlotBuffers::new(g, 8);
    let cfg = |slots, batch| RingConfig { slots, batch };
    assert_eq!(
        FrameRing::new(g, cfg(8, 3), [Policy::Lossless], b.memory(), BusyWait).err(),
        Some(RingError::Batch { slots: 8, batch: 3 })
    );
    assert_eq!(
        FrameRing::new(g, cfg(8, 0), [Policy::Lossless], b.memory(), BusyWait).err(),
        Some(RingError::Batch { slots: 8, batch: 0 })
    );
    let err = FrameRing::new(g, cfg(16, 4), [Policy::Lossless], b.memory(), BusyWait).err();
    assert_eq!(
        err,
        Some(RingError::StorageTooSmall {
            what: "mca",
            needed: 16 * 8,
            got: 8 * 8
        })
    );
    let ring = FrameRing::new(g, cfg(8, 4), [Policy::Lossless], b.memory(), BusyWait).unwrap();
    assert!(ring.split().is_ok());
    assert_eq!(ring.split().err(), Some(RingError::AlreadySplit));
}

#[test]
fn grants_never_straddle_the_wrap_and_batches_stay_contiguous() {
    let g = geometry();
    let mut b = SlotBuffers::new(g, 8);
    let ring = FrameRing::new(
        g,
        RingConfig { slots: 8, batch: 4 },
        [Policy::Lossless],
        b.memory(),
        BusyWait,
    )
    .unwrap();
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    assert_eq!(produce(&mut producer, 6), 6);
    {
        let grant = consumer.read(4).unwrap();
        assert_eq!(grant.len(), 4);
        assert_eq!(grant.mca().len(), 4 * g.mca_words());
        assert_frames(grant.mca(), grant.scalers(), grant.meta(), 0);
        grant.release(4);
    }
    // Positions 6 and 7 remain before the wrap: the grant stops there.
    assert_eq!(produce(&mut producer, 5), 2);
    assert_eq!(produce(&mut producer, 5), 4);
    let grant = consumer.read(8).unwrap();
    assert_eq!((grant.first_position(), grant.len()), (4, 4));
    assert_frames(grant.mca(), grant.scalers(), grant.meta(), 4);
    grant.release(4);
    let grant = consumer.read(8).unwrap();
    assert_eq!((grant.first_position(), grant.len()), (8, 4));
    assert_frames(grant.mca(), grant.scalers(), grant.meta(), 8);
}

#[test]
fn roi_sums_have_their_own_area_per_slot() {
    let g = geometry().with_rois(3).unwrap();
    let mut short = SlotBuffers::new(geometry(), 4);
    let refused = FrameRing::new(
        g,
        RingConfig { slots: 4, batch: 2 },
        [Policy::Lossless],
        short.memory(),
        BusyWait,
    );
    assert!(matches!(
        refused,
        Err(RingError::StorageTooSmall { what: "rois", .. })
    ));
    let mut b = SlotBuffers::new(g, 4);
    assert_eq!(b.rois.len(), 4 * 3 * g.n_channels());
    let ring = FrameRing::new(
        g,
        RingConfig { slots: 4, batch: 2 },
        [Policy::Lossless],
        b.memory(),
        BusyWait,
    )
    .unwrap();
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    let rw = g.roi_words();
    // Three laps: every slot's ROI area is written and read back with its own frame.
    for lap in 0..3u64 {
        for _ in 0..2 {
            let mut grant = producer.grant(2).unwrap();
            let first = grant.first_position();
            let SlotParts { rois, meta, .. } = grant.parts_mut();
            assert_eq!(rois.len(), 2 * rw);
            for (k, m) in meta.iter_mut().enumerate() {
                let seq = first + k as u64;
                m.frame_number = seq;
                for (w, word) in rois[k * rw..(k + 1) * rw].iter_mut().enumerate() {
                    *word = (seq << 32) + w as u64;
                }
            }
            grant.commit(2);
        }
        let grant = consumer.read(4).unwrap();
        assert_eq!(grant.len(), 4);
        for (k, m) in grant.meta().iter().enumerate() {
            assert_eq!(m.frame_number, lap * 4 + k as u64);
            for w in 0..rw {
                assert_eq!(grant.rois()[k * rw + w], (m.frame_number << 32) + w as u64);
            }
        }
        grant.release(4);
    }
}

#[test]
fn lossless_consumer_holds_the_producer_and_full_episodes_count_once() {
    let g = geometry();
    let mut b = SlotBuffers::new(g, 4);
    let ring = FrameRing::new(
        g,
        RingConfig { slots: 4, batch: 2 },
        [Policy::Lossless, Policy::Lossless],
        b.memory(),
        BusyWait,
    )
    .unwrap();
    let (mut producer, [mut fast, mut slow]) = ring.split().unwrap();
    assert_eq!(produce(&mut producer, 4), 4);
    fast.read(4).unwrap().release(4);
    assert_eq!(produce(&mut producer, 1), 0);
    assert_eq!(produce(&mut producer, 1), 0);
    assert_eq!(ring.stats().full_events, 1);
    slow.read(1).unwrap().release(1);
    assert_eq!(produce(&mut producer, 4), 1);
    assert_eq!(produce(&mut producer, 1), 0);
    let stats = ring.stats();
    assert_eq!(stats.full_events, 2);
    assert_eq!(stats.committed, 5);
    assert_eq!(stats.high_water, 4);
    assert_eq!(stats.fill(), 4);
    assert_eq!(stats.consumers[1].delivered, 1);
    assert_eq!(stats.consumers[1].dropped, 0);
}

#[test]
fn lossy_consumer_is_skipped_and_counts_what_it_missed() {
    let g = geometry();
    let mut b = SlotBuffers::new(g, 4);
    let ring = FrameRing::new(
        g,
        RingConfig { slots: 4, batch: 1 },
        [Policy::Lossless, Policy::Lossy],
        b.memory(),
        BusyWait,
    )
    .unwrap();
    let (mut producer, [mut writer, mut monitor]) = ring.split().unwrap();
    for _ in 0..10 {
        assert_eq!(produce(&mut producer, 1), 1);
        writer.read(1).unwrap().release(1);
    }
    let stats = ring.stats();
    assert_eq!(stats.consumers[1].dropped, 6);
    // The monitor lags by four frames, but only lossless consumers count as fill.
    assert_eq!((stats.fill(), stats.high_water), (0, 1));
    assert_eq!(monitor.available(), 4);
    // Positions 6..10 sit at slots 2, 3, 0, 1: two reads across the wrap.
    for first in [6, 8] {
        let grant = monitor.read(10).unwrap();
        assert_eq!((grant.first_position(), grant.len()), (first, 2));
        assert_frames(grant.mca(), grant.scalers(), grant.meta(), first);
        grant.release(2);
    }
    let stats = ring.stats();
    assert_eq!(
        stats.consumers[1].delivered + stats.consumers[1].dropped,
        stats.committed
    );
}

#[test]
fn a_reading_lossy_consumer_is_not_overwritten() {
    let g = geometry();
    let mut b = SlotBuffers::new(g, 2);
    let ring = FrameRing::new(
        g,
        RingConfig { slots: 2, batch: 1 },
        [Policy::Lossy],
        b.memory(),
        BusyWait,
    )
    .unwrap();
    let (mut producer, [mut monitor]) = ring.split().unwrap();
    assert_eq!(produce(&mut producer, 2), 2);
    let grant = monitor.read(1).unwrap();
    // Frame 0 is held: only one slot... and that one is frame 1's, unreleased, so nothing is
    // writable while the monitor reads frame 0.
    assert_eq!(produce(&mut producer, 1), 0);
    assert_frames(grant.mca(), grant.scalers(), grant.meta(), 0);
    drop(grant); // ends the read without releasing
    assert_eq!(produce(&mut producer, 1), 1);
    assert_eq!(ring.stats().consumers[0].dropped, 1);
}

#[test]
fn skip_to_latest_keeps_only_the_newest_frames() {
    let g = geometry();
    let mut b = SlotBuffers::new(g, 8);
    let ring = FrameRing::new(
        g,
        RingConfig { slots: 8, batch: 1 },
        [Policy::Lossless, Policy::Lossy],
        b.memory(),
        BusyWait,
    )
    .unwrap();
    let (mut producer, [mut writer, mut monitor]) = ring.split().unwrap();
    assert_eq!(writer.skip_to_latest(1), 0, "lossless consumers never skip");
    produce(&mut producer, 5);
    assert_eq!(monitor.skip_to_latest(1), 4);
    let grant = monitor.read(8).unwrap();
    assert_eq!((grant.first_position(), grant.len()), (4, 1));
    grant.release(1);
    assert_eq!(monitor.skip_to_latest(1), 0);
    let s = ring.stats().consumers[1];
    assert_eq!((s.delivered, s.dropped, s.position), (1, 4, 5));
}

#[test]
fn closing_lets_consumers_drain_then_finish() {
    let g = geometry();
    let mut b = SlotBuffers::new(g, 4);
    let ring = FrameRing::new(
        g,
        RingConfig { slots: 4, batch: 2 },
        [Policy::Lossless],
        b.memory(),
        ParkWait::new(),
    )
    .unwrap();
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    produce(&mut producer, 3);
    producer.close();
    assert!(ring.is_closed());
    assert!(!consumer.is_finished());
    assert_eq!(consumer.wait_available(10), 3);
    consumer.read(4).unwrap().release(3);
    assert!(consumer.is_finished());
    assert_eq!(consumer.wait_available(1), 0);
}

static STORAGE: StaticFrameStorage<4, { 4 * 2 * 4 }, { 4 * 2 * 9 }> = StaticFrameStorage::new();

#[test]
fn static_storage_backs_a_ring() {
    let memory = STORAGE.take().unwrap();
    assert!(STORAGE.take().is_none());
    let ring = FrameRing::new(
        geometry(),
        RingConfig { slots: 4, batch: 2 },
        [Policy::Lossless],
        memory,
        BusyWait,
    )
    .unwrap();
    let (mut producer, [mut consumer]) = ring.split().unwrap();
    for round in 0..5u64 {
        assert_eq!(produce(&mut producer, 2), 2);
        let g = consumer.read(2).unwrap();
        assert_frames(g.mca(), g.scalers(), g.meta(), round * 2);
        g.release(2);
    }
}

#[test]
fn threads_see_every_frame_in_order() {
    const FRAMES: u64 = 20_000;
    let g = geometry();
    let mut b = SlotBuffers::new(g, 64);
    let ring = FrameRing::new(
        g,
        RingConfig {
            slots: 64,
            batch: 8,
        },
        [Policy::Lossless, Policy::Lossless, Policy::Lossy],
        b.memory(),
        ParkWait::new(),
    )
    .unwrap();
    let (mut producer, consumers) = ring.split().unwrap();
    std::thread::scope(|s| {
        let mut handles = Vec::new();
        for mut consumer in consumers {
            handles.push(s.spawn(move || {
                let mut next_expected = 0u64;
                let mut seen = 0u64;
                while consumer.wait_available(1) > 0 {
                    let Some(grant) = consumer.read(8) else {
                        continue;
                    };
                    let first = grant.meta()[0].frame_number;
                    assert!(
                        first >= next_expected,
                        "frame {first} after {next_expected}"
                    );
                    assert_frames(grant.mca(), grant.scalers(), grant.meta(), first);
                    next_expected = first + grant.len() as u64;
                    seen += grant.len() as u64;
                    let n = grant.len();
                    grant.release(n);
                }
                seen
            }));
        }
        let mut sent = 0;
        while sent < FRAMES {
            let want = (FRAMES - sent).min(8) as usize;
            let mut grant = producer.grant_blocking(want).unwrap();
            let first = grant.first_position();
            let n = grant.len();
            let SlotParts {
                mca, scalers, meta, ..
            } = grant.parts_mut();
            let (mw, sw) = (mca.len() / n, scalers.len() / n);
            for i in 0..n {
                let seq = first + i as u64;
                mca[i * mw..(i + 1) * mw].fill(seq as u32);
                scalers[i * sw..(i + 1) * sw].fill(seq as u32 + 1);
                meta[i].frame_number = seq;
            }
            grant.commit(n);
            sent += n as u64;
        }
        producer.close();
        let seen: Vec<u64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert_eq!(seen[0], FRAMES);
        assert_eq!(seen[1], FRAMES);
        let lossy = ring.stats().consumers[2];
        assert_eq!(lossy.delivered, seen[2]);
        assert_eq!(lossy.delivered + lossy.dropped, FRAMES);
    });
}
