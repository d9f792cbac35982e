//! Trains appended from memory read back equal through the euxfel reader.

use euxfel::{DataCollection, OpenOptions};
use euxfel_write::{Cell, Element, Error, RecordOptions, Recorder, SourceData};

fn open(dir: &std::path::Path) -> DataCollection {
    DataCollection::open_run(
        dir,
        &OpenOptions {
            use_cache: false,
            ..OpenOptions::default()
        },
    )
    .unwrap()
}

fn f64s(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn recorded_trains_read_back_equal() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("r0007");
    let mut rec = Recorder::create(
        &dir,
        &RecordOptions {
            run: 7,
            ..RecordOptions::default()
        },
    )
    .unwrap();
    let ctrl = "MID_XTD1/MOTOR/X";
    let inst = "MID_DET/CAM/1:output";
    // 1114 trains: control values span several chunks of 1024 rows; the camera's 70 KiB
    // images make 3-row chunks, so the last one is partial.
    let trains: Vec<u64> = (1000..2300).filter(|t| t % 7 != 0).collect();
    for &t in &trains {
        let pos = f64s(&[t as f64 * 0.5]);
        let stamp = (t * 10).to_le_bytes();
        let image: Vec<u8> = (0..(140 * 256 * 2)).map(|i| (i as u64 + t) as u8).collect();
        let shape = [140, 256];
        let label = format!("train {t}");
        let mut sources = vec![SourceData {
            name: ctrl,
            keys: vec![
                (
                    "position.value",
                    Cell::Raw {
                        element: Element::Float(8),
                        shape: &[],
                        bytes: &pos,
                    },
                ),
                (
                    "position.timestamp",
                    Cell::Raw {
                        element: Element::UInt(8),
                        shape: &[],
                        bytes: &stamp,
                    },
                ),
                ("state.value", Cell::Text(&label)),
            ],
        }];
        // The camera misses every third train.
        if t % 3 != 0 {
            sources.push(SourceData {
                name: inst,
                keys: vec![(
                    "data.image",
                    Cell::Raw {
                        element: Element::UInt(2),
                        shape: &shape,
                        bytes: &image,
                    },
                )],
            });
        }
        let a = rec.append(t, t * 100_000_000, &sources).unwrap();
        assert!(a.refused.is_empty(), "{:?}", a.refused);
    }
    // Out of order and a changed shape are refused without writing anything.
    assert!(matches!(
        rec.append(5, 0, &[]),
        Err(Error::TrainOrder { train_id: 5, .. })
    ));
    let small = [0u8; 4];
    let a = rec
        .append(
            5000,
            0,
            &[SourceData {
                name: inst,
                keys: vec![(
                    "data.image",
                    Cell::Raw {
                        element: Element::UInt(2),
                        shape: &[2],
                        bytes: &small,
                    },
                )],
            }],
        )
        .unwrap();
    assert_eq!(a.refused.len(), 1);
    let s = rec.finish().unwrap();
    assert_eq!(s.trains, trains.len() + 1);
    assert_eq!((s.control_sources, s.instrument_sources), (1, 1));
    assert_eq!(
        s.path,
        std::path::absolute(dir.join("RAW-R0007-DA01-S00000.h5")).unwrap()
    );
    // Only the final file is left.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);

    let dc = open(&dir);
    let mut all = trains.clone();
    all.push(5000);
    assert_eq!(*dc.train_ids, all);
    let pos: Vec<f64> = dc
        .key(ctrl, "position.value")
        .unwrap()
        .ndarray::<f64>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    let expected: Vec<f64> = trains.iter().map(|&t| t as f64 * 0.5).collect();
    assert_eq!(pos, expected);
    let cam = dc.key(inst, "data.image").unwrap();
    assert_eq!(cam.entry_shape, vec![140, 256]);
    let with_cam: Vec<u64> = trains.iter().copied().filter(|t| t % 3 != 0).collect();
    assert_eq!(cam.train_id_coordinates().unwrap(), with_cam);
    let images = cam.ndarray::<u16>().unwrap();
    let last = *with_cam.last().unwrap();
    let expected: Vec<u16> = (0..140 * 256)
        .map(|i| u16::from_le_bytes([(2 * i + last) as u8, (2 * i + 1 + last) as u8]))
        .collect();
    let got: Vec<u16> = images
        .index_axis(ndarray::Axis(0), with_cam.len() - 1)
        .iter()
        .copied()
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn a_recording_without_trains_leaves_nothing() {
    let td = tempfile::tempdir().unwrap();
    let rec = Recorder::create(td.path(), &RecordOptions::default()).unwrap();
    assert!(matches!(rec.finish(), Err(Error::NoTrains)));
    assert_eq!(std::fs::read_dir(td.path()).unwrap().count(), 0);
    // Dropped without finish: nothing either.
    let mut rec = Recorder::create(td.path(), &RecordOptions::default()).unwrap();
    rec.append(1, 0, &[]).unwrap();
    drop(rec);
    assert_eq!(std::fs::read_dir(td.path()).unwrap().count(), 0);
}
