use super::*;
use serde_json::json;

fn read<T: for<'de> Deserialize<'de>>(value: serde_json::Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|e| e.to_string())
}

fn refused<T: for<'de> Deserialize<'de> + fmt::Debug>(value: serde_json::Value) -> String {
    match read::<T>(value.clone()) {
        Ok(v) => panic!("{value} was accepted as {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn seconds_are_positive_and_finite() {
    assert_eq!(read::<Seconds>(json!(2)).map(Seconds::get), Ok(2.0));
    assert_eq!(read::<Seconds>(json!(0.5)).map(Seconds::get), Ok(0.5));
    for bad in [json!(0), json!(-1.0), json!("5"), json!(true), json!(null)] {
        refused::<Seconds>(bad);
    }
    assert!(Seconds::new(f64::NAN).is_err() && Seconds::new(f64::INFINITY).is_err());
    assert_eq!(
        Seconds::new(1e300).map(Seconds::duration),
        Ok(Duration::MAX)
    );
}

#[test]
fn cpus_round_like_docker_run() {
    assert_eq!(read::<NanoCpus>(json!(1.5)), Ok(NanoCpus(1_500_000_000)));
    // 2.01 * 1e9 is 2009999999.9999998 in binary floating point.
    assert_eq!(read::<NanoCpus>(json!(2.01)), Ok(NanoCpus(2_010_000_000)));
    assert_eq!(read::<NanoCpus>(json!(2)), Ok(NanoCpus(2_000_000_000)));
    for bad in [json!(0), json!(1e-10), json!(-1), json!("2"), json!(true)] {
        assert!(refused::<NanoCpus>(bad).contains("number of CPUs"));
    }
    assert_eq!(
        serde_json::to_value(NanoCpus(1_500_000_000)).ok(),
        Some(json!(1.5))
    );
}

#[test]
fn sizes_read_bytes_and_docker_py_suffixes() {
    for (given, bytes) in [
        (json!(1024), 1024),
        (json!("512"), 512),
        (json!("512b"), 512),
        (json!("2k"), 2048),
        (json!("512m"), 512 << 20),
        (json!(" 2G "), 2 << 30),
    ] {
        assert_eq!(read::<Bytes>(given.clone()), Ok(Bytes(bytes)), "{given}");
    }
    assert!(refused::<Bytes>(json!(0)).contains("must be positive"));
    assert!(refused::<Bytes>(json!(-5)).contains("must be positive"));
    assert!(refused::<Bytes>(json!("0m")).contains("must be positive"));
    for bad in [
        json!("lots"),
        json!("5t"),
        json!("m"),
        json!("99999999999g"),
    ] {
        assert!(refused::<Bytes>(bad).contains("not a size like 512m"));
    }
    assert!(refused::<Bytes>(json!(1.5)).contains("bytes or a size"));
    assert!(refused::<Bytes>(json!(true)).contains("bytes or a size"));
}

#[test]
fn gpus_are_a_count_or_all() {
    assert_eq!(read::<Gpus>(json!(2)), Ok(Gpus(2)));
    assert_eq!(read::<Gpus>(json!("all")), Ok(Gpus(-1)));
    assert_eq!(serde_json::to_value(Gpus(-1)).ok(), Some(json!("all")));
    for bad in [json!(0), json!(-1), json!("some"), json!(1.0), json!(true)] {
        assert!(refused::<Gpus>(bad).contains("positive count or 'all'"));
    }
}

#[test]
fn counts_and_oom_scores_are_bounded_integers() {
    assert_eq!(read::<Count>(json!(512)), Ok(Count(512)));
    for bad in [json!(0), json!(-1), json!(1.5), json!(true), json!("5")] {
        refused::<Count>(bad);
    }
    assert_eq!(read::<OomScoreAdj>(json!(-1000)), Ok(OomScoreAdj(-1000)));
    assert_eq!(read::<OomScoreAdj>(json!(1000)), Ok(OomScoreAdj(1000)));
    for bad in [json!(1001), json!(-1001), json!(true)] {
        refused::<OomScoreAdj>(bad);
    }
}

#[test]
fn a_ulimit_is_one_limit_or_soft_and_hard() {
    assert_eq!(read::<Ulimit>(json!(10)), Ok(Ulimit { soft: 10, hard: 10 }));
    assert_eq!(
        read::<Ulimit>(json!([1, 2])),
        Ok(Ulimit { soft: 1, hard: 2 })
    );
    for bad in [
        json!([2, 1]),
        json!(-1),
        json!([1]),
        json!([1, 2, 3]),
        json!("1"),
    ] {
        refused::<Ulimit>(bad);
    }
    assert_eq!(
        serde_json::to_value(Ulimit { soft: 1, hard: 2 }).ok(),
        Some(json!([1, 2]))
    );
}

#[test]
fn words_refuse_blanks_and_a_lone_string() {
    assert_eq!(read::<Word>(json!("x")), Ok(Word("x".into())));
    refused::<Word>(json!(" "));
    refused::<Word>(json!(""));
    assert_eq!(
        read::<Words>(json!(["A", "B"])),
        Ok(Words(vec!["A".into(), "B".into()]))
    );
    assert!(refused::<Words>(json!("NET_RAW")).contains("not one string"));
    refused::<Words>(json!(["ok", ""]));
}

#[test]
fn names_and_paths_follow_their_rules() {
    assert!(read::<ContainerName>(json!("wool-worker-0123abcd")).is_ok());
    for bad in ["-x", "", "a b", "a/b"] {
        assert!(refused::<ContainerName>(json!(bad)).contains("name_prefix"));
    }
    assert!(read::<AbsolutePath>(json!("/cache")).is_ok());
    assert!(refused::<AbsolutePath>(json!("cache")).contains("absolute"));
}

#[test]
fn log_config_is_a_driver_and_its_options() {
    let log: Result<LogConfig, _> = read(json!({"type": "local", "config": {"max-size": "1m"}}));
    let log = log.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(log.driver.as_str(), "local");
    assert_eq!(log.config["max-size"], "1m");
    assert!(read::<LogConfig>(json!({"type": "local", "config": null})).is_ok());
    assert!(refused::<LogConfig>(json!({"driver": "local"})).contains("unknown field"));
    refused::<LogConfig>(json!({"type": ""}));
}

#[test]
fn binds_read_a_list_or_docker_py_mapping() {
    assert_eq!(read::<Binds>(json!(null)), Ok(Binds::default()));
    assert_eq!(
        read::<Binds>(json!(["/a:/b:ro"])),
        Ok(Binds(vec!["/a:/b:ro".into()]))
    );
    assert_eq!(
        read::<Binds>(json!({"/srv": {"bind": "/data", "mode": "ro"}, "cache": {"bind": "/c"}})),
        Ok(Binds(vec!["/srv:/data:ro".into(), "cache:/c:rw".into()]))
    );
    assert!(refused::<Binds>(json!({"/srv": {"mode": "ro"}})).contains("'bind' destination"));
    assert!(refused::<Binds>(json!("/a:/b")).contains("not one string"));
}

#[test]
fn a_flag_is_a_bool_only() {
    assert_eq!(read::<Flag>(json!(true)), Ok(Flag(true)));
    for bad in [json!(1), json!("yes"), json!(null)] {
        assert!(refused::<Flag>(bad).contains("expected True or False"));
    }
    // serde's words around a rule read as a sentence.
    assert!(refused::<Count>(json!(true)).ends_with("expected a positive count"));
}
