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
    assert!(s.error.is_none() && s.lost_trains.is_empty());
    assert_eq!(s.trains, trains.len() + 1);
    assert_eq!((s.control_sources, s.instrument_sources), (1, 1));
    assert_eq!(s.files.len(), 1);
    assert_eq!(
        s.files[0].path,
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

fn scalar_train<'a>(name: &'a str, value: &'a [u8]) -> Vec<SourceData<'a>> {
    vec![SourceData {
        name,
        keys: vec![(
            "x.value",
            Cell::Raw {
                element: Element::Float(8),
                shape: &[],
                bytes: value,
            },
        )],
    }]
}

#[test]
fn trains_go_into_sequence_files_each_complete_when_full() {
    let td = tempfile::tempdir().unwrap();
    let dir = td.path().join("r0003");
    let opts = RecordOptions {
        run: 3,
        trains_per_file: Some(4),
        ..RecordOptions::default()
    };
    let mut rec = Recorder::create(&dir, &opts).unwrap();
    let name = "SA1_XTD2/MOTOR/Y";
    for t in 1..=10u64 {
        let v = f64s(&[t as f64]);
        rec.append(t * 2, 0, &scalar_train(name, &v)).unwrap();
        if t == 4 {
            // The first file is complete (and readable) as soon as it holds its trains.
            let first = dir.join("RAW-R0003-DA01-S00000.h5");
            let dc = DataCollection::open_file(&first).unwrap();
            assert_eq!(*dc.train_ids, vec![2, 4, 6, 8]);
        }
    }
    let s = rec.finish().unwrap();
    let names: Vec<String> = s
        .files
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "RAW-R0003-DA01-S00000.h5",
            "RAW-R0003-DA01-S00001.h5",
            "RAW-R0003-DA01-S00002.h5"
        ]
    );
    let spans: Vec<_> = s
        .files
        .iter()
        .map(|f| (f.trains, f.first_train, f.last_train))
        .collect();
    assert_eq!(spans, [(4, 2, 8), (4, 10, 16), (2, 18, 20)]);
    let dc = open(&dir);
    assert_eq!(*dc.train_ids, (1..=10).map(|t| t * 2).collect::<Vec<u64>>());
    let values: Vec<f64> = dc
        .key(name, "x.value")
        .unwrap()
        .ndarray::<f64>()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert_eq!(values, (1..=10).map(f64::from).collect::<Vec<f64>>());
    // A second recording of the run is refused; with overwrite, it replaces every sequence
    // file of the first (none of the old ones is left to be read as part of the new run).
    assert!(matches!(
        Recorder::create(&dir, &opts),
        Err(Error::Exists(_))
    ));
    let mut rec = Recorder::create(
        &dir,
        &RecordOptions {
            overwrite: true,
            ..opts.clone()
        },
    )
    .unwrap();
    let v = f64s(&[99.0]);
    rec.append(100, 0, &scalar_train(name, &v)).unwrap();
    let s = rec.finish().unwrap();
    assert_eq!(s.files.len(), 1);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    assert_eq!(*open(&dir).train_ids, vec![100]);
}
