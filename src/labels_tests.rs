use super::*;
use crate::engine::Endpoint;

fn container(labels: &[(&str, &str)], networks: &[(&str, &str)]) -> ContainerInfo {
    ContainerInfo {
        id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".into(),
        name: "w1".into(),
        image: "img".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        state: "running".into(),
        health: None,
        networks: networks
            .iter()
            .map(|(n, ip)| {
                (
                    n.to_string(),
                    Endpoint {
                        network_id: format!("id-{n}"),
                        ip: ip.to_string(),
                    },
                )
            })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn a_published_worker_is_reached_at_its_published_port() {
    let mut c = container(&[(PUBLISH, "true")], &[("wool", "10.0.0.9")]);
    assert_eq!(parse(&c, None).unwrap(), Err(Skip::NoAddress), "not yet");
    c.published.insert(50051, "127.0.0.1:32768".into());
    let r = parse(&c, None).unwrap().unwrap();
    assert_eq!(
        (r.address.as_str(), r.network.as_str()),
        ("127.0.0.1:32768", "wool")
    );
    assert_eq!(
        parse(&c, Some("wool")).unwrap().unwrap().address,
        "127.0.0.1:32768"
    );
    assert_eq!(parse(&c, Some("other")).unwrap(), Err(Skip::NoAddress));
    // Published for another port than the one it serves: not this worker's.
    c.labels.insert(PORT.into(), "6000".into());
    assert_eq!(parse(&c, None).unwrap(), Err(Skip::NoAddress));
    // Without the label, a published port is not what it advertises.
    let mut plain = container(&[], &[("wool", "10.0.0.9")]);
    plain.published.insert(50051, "127.0.0.1:32768".into());
    assert_eq!(
        parse(&plain, None).unwrap().unwrap().address,
        "10.0.0.9:50051"
    );
    let p = Publication {
        publish: Some(crate::values::Flag(true)),
        ..Default::default()
    };
    assert_eq!(to_labels(&p, &BTreeMap::new())[PUBLISH], "true");
    assert!(!to_labels(&Publication::default(), &BTreeMap::new()).contains_key(PUBLISH));
}

#[test]
fn round_trip_of_a_publication() {
    let p = Publication {
        uid: "6f0c1a52-3a70-4a36-9a4b-0b7f3d2a9c11".into(),
        port: Port(50051),
        tags: vec!["gpu".into(), "fast".into()],
        extra: Extra(BTreeMap::from([("a".to_owned(), "1".to_owned())])),
        secure: true,
        identity: Some("api.wool".into()),
        options: Some(Options::from([(
            "max_concurrent_streams".to_owned(),
            serde_json::json!(10),
        )])),
        network: Some("wool".into()),
        publish: None,
    };
    let selector = BTreeMap::from([(SELECTOR.to_owned(), "true".to_owned())]);
    let mut labels: Vec<(String, String)> = to_labels(&p, &selector).into_iter().collect();
    labels.push((VERSION.into(), "0.15.7".into()));
    let refs: Vec<(&str, &str)> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let c = container(&refs, &[("bridge", "172.17.0.2"), ("wool", "10.0.0.5")]);
    let r = parse(&c, None).unwrap().unwrap();
    assert_eq!(r.uid, p.uid);
    assert_eq!(r.address, "10.0.0.5:50051");
    assert_eq!(r.tags, p.tags);
    assert_eq!(r.extra, r#"{"a":"1"}"#);
    assert!(r.secure);
    assert_eq!(r.identity, p.identity);
    assert_eq!(
        r.options.as_deref(),
        Some(r#"{"max_concurrent_streams":10}"#)
    );
    assert_eq!(r.version, "0.15.7");
    assert_eq!(r.network, "wool");
}

#[test]
fn selector_only_container_gets_defaults() {
    let c = container(&[(SELECTOR, "true")], &[("wool", "10.0.0.9")]);
    let r = parse(&c, Some("wool")).unwrap().unwrap();
    assert_eq!(r.uid, "01234567-89ab-cdef-0123-456789abcdef");
    assert_eq!(r.address, "10.0.0.9:50051");
    assert_eq!(r.extra, "{}");
    assert!(r.tags.is_empty());
    assert!(!r.secure);
}

#[test]
fn scoped_network_missing_means_no_address() {
    let c = container(&[], &[("other", "10.0.0.9")]);
    assert_eq!(parse(&c, Some("wool")).unwrap(), Err(Skip::NoAddress));
}

#[test]
fn several_networks_pick_first_user_defined_by_name() {
    let c = container(
        &[],
        &[
            ("bridge", "172.17.0.2"),
            ("zeta", "10.0.1.2"),
            ("alpha", "10.0.2.2"),
        ],
    );
    assert_eq!(parse(&c, None).unwrap().unwrap().address, "10.0.2.2:50051");
    let c = container(
        &[(NETWORK, "zeta")],
        &[
            ("bridge", "172.17.0.2"),
            ("zeta", "10.0.1.2"),
            ("alpha", "10.0.2.2"),
        ],
    );
    assert_eq!(parse(&c, None).unwrap().unwrap().address, "10.0.1.2:50051");
    let c = container(&[], &[("bridge", "172.17.0.2")]);
    assert_eq!(
        parse(&c, None).unwrap().unwrap().address,
        "172.17.0.2:50051"
    );
}

#[test]
fn address_label_overrides() {
    let c = container(&[(ADDRESS, "worker.example:6000")], &[("wool", "10.0.0.9")]);
    assert_eq!(
        parse(&c, Some("wool")).unwrap().unwrap().address,
        "worker.example:6000"
    );
}

#[test]
fn malformed_labels_name_the_key() {
    for (key, value) in [
        (UID, "nope"),
        (PORT, "http"),
        (PORT, "0"),
        (EXTRA, "[1]"),
        (EXTRA, "{"),
        (EXTRA, r#"{"a":1}"#),
        (PORT, "65536"),
        (SECURE, "maybe"),
        (PUBLISH, "maybe"),
        (OPTIONS, "3"),
        (ADDRESS, "nohost"),
    ] {
        let c = container(&[(key, value)], &[("wool", "10.0.0.9")]);
        match parse(&c, Some("wool")) {
            Err(Error::InvalidLabel {
                key: k, container, ..
            }) => {
                assert_eq!(k, key);
                assert_eq!(container, "w1");
            }
            other => panic!("{key}={value}: expected InvalidLabel, got {other:?}"),
        }
    }
}

#[test]
fn the_owner_filter_admits_unmanaged_and_own_containers_only() {
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let me = "1000/m.b.4026531836/42/7";
    let unmanaged = labels(&[(SELECTOR, "true")]);
    let mine = labels(&[(SELECTOR, "true"), (MANAGED, "true"), (OWNER, me)]);
    let theirs = labels(&[
        (SELECTOR, "true"),
        (MANAGED, "true"),
        (OWNER, "1000/m.b.4026531836/43/7"),
    ]);
    let ownerless = labels(&[(SELECTOR, "true"), (MANAGED, "true")]);
    assert!(owner_admits(Some(me), &unmanaged));
    assert!(owner_admits(Some(me), &mine));
    assert!(!owner_admits(Some(me), &theirs));
    // A managed container that lost its owner label is nobody's to use.
    assert!(!owner_admits(Some(me), &ownerless));
    // A prefix of the owner is another owner.
    assert!(!owner_admits(Some("1000/m.b.4026531836/4"), &mine));
    for l in [&unmanaged, &mine, &theirs, &ownerless] {
        assert!(owner_admits(None, l));
    }
}

#[test]
fn the_port_rule_is_1_to_65535_from_a_number_or_text() {
    assert_eq!(Port::new(1), Ok(Port(1)));
    assert_eq!(Port::new(65535), Ok(Port(65535)));
    assert_eq!(Port::parse(" 6000\n"), Ok(Port(6000)));
    for bad in [0, -1, 65536, i64::MAX] {
        assert!(Port::new(bad).is_err(), "{bad}");
    }
    for bad in ["", "http", "1.5", "0", "65536", "0x10"] {
        assert!(Port::parse(bad).is_err(), "{bad:?}");
    }
    // The same rule where a port is deserialized (the worker config).
    assert!(serde_json::from_str::<Port>("0").is_err());
    assert!(serde_json::from_str::<Port>("\"6000\"").is_err());
    assert_eq!(serde_json::from_str::<Port>("6000").ok(), Some(Port(6000)));
}

#[test]
fn the_extra_rule_is_strings_to_strings() {
    let extra = Extra::parse(r#"{"zone":"b","region":"eu"}"#).unwrap_or_default();
    assert_eq!(extra.0.len(), 2);
    assert_eq!(extra.to_json(), r#"{"region":"eu","zone":"b"}"#);
    for bad in [
        r#"{"a":1}"#,
        r#"{"a":null}"#,
        r#"{"a":["b"]}"#,
        "[]",
        "{",
        "\"a\"",
    ] {
        assert!(Extra::parse(bad).is_err(), "{bad}");
    }
    let err = Extra::parse(r#"{"a":true}"#).err().unwrap_or_default();
    assert!(err.contains("must map strings to strings"), "{err}");
    assert_eq!(Extra::default().to_json(), "{}");
}

#[test]
fn options_are_a_json_object_in_canonical_text() {
    let options = parse_options(r#"{"b":1,"a":true}"#).unwrap_or_default();
    assert_eq!(options_json(&options), r#"{"a":true,"b":1}"#);
    assert!(parse_options("[1]").is_err() && parse_options("3").is_err());
}

#[test]
fn filter_terms_are_key_equals_value() {
    let s = BTreeMap::from([
        ("a".to_owned(), "1".to_owned()),
        ("b".to_owned(), String::new()),
    ]);
    assert_eq!(filter_terms(&s), vec!["a=1".to_owned(), "b".to_owned()]);
}
