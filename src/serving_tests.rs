use super::*;

fn env(pairs: &[(&str, &str)]) -> Env {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn refused(pairs: &[(&str, &str)]) -> VarError {
    match ServerConfig::from_env(&env(pairs)) {
        Ok(cfg) => panic!("{pairs:?} was accepted as {cfg:?}"),
        Err(e) => e,
    }
}

#[test]
fn an_empty_environment_gives_the_documented_defaults() {
    let cfg = ServerConfig::from_env(&Env::new()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.host, DEFAULT_BIND_HOST);
    assert_eq!(cfg.port, Port::default());
    assert_eq!(cfg.uid, None);
    assert!(cfg.tags.is_empty() && cfg.extra.0.is_empty() && cfg.options.is_empty());
    assert_eq!(
        (cfg.tls, cfg.tls_mutual, cfg.stdin_control),
        (None, true, false)
    );
    assert_eq!(cfg.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(cfg.deregister_delay, DEFAULT_DEREGISTER_DELAY);
    assert_eq!((cfg.proxy_pool_ttl, cfg.backpressure), (None, None));
}

#[test]
fn every_variable_is_read() {
    let cfg = ServerConfig::from_env(&env(&[
        ("WOOL_BIND_HOST", " 127.0.0.1 "),
        ("WOOL_PORT", "6000"),
        ("WOOL_UID", "6f0c1a52-3a70-4a36-9a4b-0b7f3d2a9c11"),
        ("WOOL_TAGS", "gpu, fast,,gpu"),
        ("WOOL_EXTRA", r#"{"region": "eu"}"#),
        ("WOOL_OPTIONS", r#"{"compression": 1}"#),
        ("WOOL_TLS_MUTUAL", "no"),
        ("WOOL_DOCKER_STDIN_CONTROL", "ON"),
        ("WOOL_SHUTDOWN_GRACE", "5"),
        ("WOOL_DEREGISTER_DELAY", "0"),
        ("WOOL_SERVER_OPTIONS", r#"{"proxy_pool_ttl": 3}"#),
        ("WOOL_PROXY_POOL_TTL", "2.5"),
        ("WOOL_BACKPRESSURE", "gAU="),
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.host, "127.0.0.1");
    assert_eq!(cfg.port, Port(6000));
    assert_eq!(cfg.tags, ["fast", "gpu"]);
    assert_eq!(cfg.extra.0["region"], "eu");
    assert_eq!(cfg.options["compression"], 1);
    assert!(!cfg.tls_mutual && cfg.stdin_control);
    assert_eq!((cfg.shutdown_grace, cfg.deregister_delay), (5.0, 0.0));
    assert_eq!(cfg.server_options["proxy_pool_ttl"], 3);
    assert_eq!(cfg.proxy_pool_ttl, Some(2.5));
    assert_eq!(cfg.backpressure, Some(vec![128, 5]));
}

#[test]
fn a_bad_variable_is_named() {
    for (pairs, variable) in [
        (&[("WOOL_PORT", "http")][..], "WOOL_PORT"),
        (&[("WOOL_PORT", "70000")], "WOOL_PORT"),
        (&[("WOOL_UID", "not-a-uuid")], "WOOL_UID"),
        (&[("WOOL_EXTRA", "{")], "WOOL_EXTRA"),
        (&[("WOOL_EXTRA", r#"{"n": 1}"#)], "WOOL_EXTRA"),
        (&[("WOOL_OPTIONS", r#""x""#)], "WOOL_OPTIONS"),
        (&[("WOOL_TLS_CA", "/ca.pem")], "WOOL_TLS_CERT"),
        (
            &[
                ("WOOL_TLS_CA", "/nonexistent/ca"),
                ("WOOL_TLS_CERT", "/nonexistent/cert"),
                ("WOOL_TLS_KEY", "/nonexistent/key"),
            ],
            "WOOL_TLS_CA",
        ),
        (&[("WOOL_TLS_MUTUAL", "maybe")], "WOOL_TLS_MUTUAL"),
        (&[("WOOL_IDENTITY", "worker.example")], "WOOL_IDENTITY"),
        (&[("WOOL_SHUTDOWN_GRACE", "0")], "WOOL_SHUTDOWN_GRACE"),
        (&[("WOOL_SHUTDOWN_GRACE", "NaN")], "WOOL_SHUTDOWN_GRACE"),
        (&[("WOOL_SHUTDOWN_GRACE", "soon")], "WOOL_SHUTDOWN_GRACE"),
        (&[("WOOL_DEREGISTER_DELAY", "-1")], "WOOL_DEREGISTER_DELAY"),
        (
            &[("WOOL_DEREGISTER_DELAY", "later")],
            "WOOL_DEREGISTER_DELAY",
        ),
        (&[("WOOL_PROXY_POOL_TTL", "inf")], "WOOL_PROXY_POOL_TTL"),
        (&[("WOOL_BACKPRESSURE", "not base64!")], "WOOL_BACKPRESSURE"),
        (
            &[("WOOL_DOCKER_STDIN_CONTROL", "2")],
            "WOOL_DOCKER_STDIN_CONTROL",
        ),
    ] {
        assert_eq!(refused(pairs).variable, variable, "{pairs:?}");
    }
}

#[test]
fn the_document_wins_over_variables_and_leaves_the_rest_to_them() {
    let doc = Document {
        port: Some(Port(6000)),
        tags: Some(vec!["gpu".into()]),
        shutdown_grace: Seconds::new(2.0).ok(),
        backpressure: Some("gAU=".into()),
        ..Document::default()
    };
    let cfg = ServerConfig::from_env(&env(&[
        (DOCUMENT, &doc.to_json()),
        // The image's ENV: the document's port wins.
        ("WOOL_PORT", "50051"),
        // Not in the document: the variable's.
        ("WOOL_EXTRA", r#"{"zone": "a"}"#),
        ("WOOL_DEREGISTER_DELAY", "0.5"),
    ]))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.port, Port(6000));
    assert_eq!(cfg.tags, ["gpu"]);
    assert_eq!(cfg.shutdown_grace, 2.0);
    assert_eq!(cfg.backpressure, Some(vec![128, 5]));
    assert_eq!(cfg.extra.0["zone"], "a");
    assert_eq!(cfg.deregister_delay, 0.5);
    assert_eq!(port(&env(&[(DOCUMENT, &doc.to_json())])), Ok(Port(6000)));
}

#[test]
fn a_bad_document_is_named_with_its_field() {
    for (text, want) in [
        ("{", "WOOL_DOCKER_WORKER: "),
        (r#"{"port": 0}"#, "WOOL_DOCKER_WORKER: port: "),
        (
            r#"{"shutdown_grace": -1}"#,
            "WOOL_DOCKER_WORKER: shutdown_grace: ",
        ),
        (r#"{"extra": {"n": 1}}"#, "WOOL_DOCKER_WORKER: extra: "),
        (r#"{"uid": "nope"}"#, "WOOL_DOCKER_WORKER: uid: not a UUID"),
        (r#"{"tags": ["a,b"]}"#, "WOOL_DOCKER_WORKER: tags: "),
        (
            r#"{"backpressure": "!!"}"#,
            "WOOL_DOCKER_WORKER: the backpressure",
        ),
        (
            r#"{"replicas": 2}"#,
            "WOOL_DOCKER_WORKER: replicas: unknown field",
        ),
    ] {
        let err = refused(&[(DOCUMENT, text)]).to_string();
        assert!(err.starts_with(want), "{text}: {err}");
    }
}

#[test]
fn the_user_s_variables_take_their_fields_out_of_the_document() {
    let doc = Document {
        port: Some(Port(6000)),
        shutdown_grace: Seconds::new(2.0).ok(),
        ..Document::default()
    };
    let user = env(&[("WOOL_SHUTDOWN_GRACE", "-1")]);
    let left = doc.without(&user);
    assert_eq!((left.port, left.shutdown_grace), (Some(Port(6000)), None));
    // So the user's (bad) value is what the container reads, and names itself.
    let mut container = user.clone();
    container.insert(DOCUMENT.to_owned(), left.to_json());
    let err = ServerConfig::from_env(&container).err().map(|e| e.variable);
    assert_eq!(err.as_deref(), Some("WOOL_SHUTDOWN_GRACE"));
}
