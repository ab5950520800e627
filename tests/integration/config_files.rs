//! The configuration the README shows works as written.

#[test]
fn environment_names_from_the_readme() {
    let cfg = kairos_server::Config::load(
        None,
        [
            (
                "KAIROS__SERVER__BIND".to_string(),
                "127.0.0.1:9090".to_string(),
            ),
            (
                "KAIROS__STORE__PATH".to_string(),
                "/var/lib/kairos".to_string(),
            ),
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.bind.port(), 9090);
    assert_eq!(
        cfg.raw.store.path,
        std::path::PathBuf::from("/var/lib/kairos")
    );
}
