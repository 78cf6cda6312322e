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
