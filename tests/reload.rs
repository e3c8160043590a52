//! End-to-end: the real binary hot-reloads its configuration however it is changed, keeps the
//! old generation on an invalid edit, and reports all of it on the admin endpoint.
#![allow(
    clippy::disallowed_macros,
    clippy::disallowed_methods,
    reason = "drives a real labgate from outside: deadlines on the wall clock, polls until they pass, prints what it saw"
)]

mod support;

use support::{ConfigDir, Labgate, config_with_services, generation, services};

fn start(cfg: &ConfigDir, config: &str) -> Labgate {
    let state = cfg.path("state");
    Labgate::start(
        &["--config", cfg.path(config).to_str().expect("utf-8 path")],
        &state,
    )
}

#[test]
fn rewrite_in_place_is_picked_up() {
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", &config_with_services(&["app"]));
    let lg = start(&cfg, "labgate.toml");
    assert_eq!(generation(&lg.config()), 1);
    cfg.write("labgate.toml", &config_with_services(&["app", "wiki"]));
    let c = lg.wait_config("generation 2", |c| generation(c) == 2);
    assert_eq!(services(&c), ["app", "wiki"]);
    assert_eq!(c["last_reload"]["result"], "success");
    assert!(
        c["last_reload"]["diff"]
            .as_str()
            .unwrap_or("")
            .contains("services +wiki"),
        "{c:#}"
    );
}

#[test]
fn rename_replace_is_picked_up() {
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", &config_with_services(&["app"]));
    let lg = start(&cfg, "labgate.toml");
    cfg.rename_replace("labgate.toml", &config_with_services(&["photos"]));
    let c = lg.wait_config("generation 2", |c| generation(c) == 2);
    assert_eq!(services(&c), ["photos"]);
    // The watch survives the replaced inode: a second replace is seen too.
    cfg.rename_replace("labgate.toml", &config_with_services(&["photos", "git"]));
    let c = lg.wait_config("generation 3", |c| generation(c) == 3);
    assert_eq!(services(&c), ["photos", "git"]);
}

#[test]
fn multi_file_change_in_a_directory_lands_as_one_consistent_snapshot() {
    let cfg = ConfigDir::new();
    cfg.write(
        "conf/networks.toml",
        "[[network]]\nname = \"lan\"\ncidrs = [\"10.1.0.0/16\"]\naddresses = [\"10.1.0.2\"]\n",
    );
    cfg.write("conf/zones.toml", "[[zone]]\nname = \"home.arpa\"\n");
    cfg.write("conf/services/app.toml", "[[service]]\nhost = \"app.home.arpa\"\nbackends = [\"http://10.1.0.9\"]\nallow = [\"lan\"]\n");
    let lg = start(&cfg, "conf");
    assert_eq!(services(&lg.config()), ["app"]);
    // A new service for a new network: valid only once both files are written, like a
    // `git pull` that touches both.
    cfg.write("conf/services/cam.toml", "[[service]]\nhost = \"cam.home.arpa\"\nbackends = [\"http://10.4.0.9\"]\nallow = [\"iot\"]\n");
    cfg.write("conf/networks.toml", "[[network]]\nname = \"lan\"\ncidrs = [\"10.1.0.0/16\"]\naddresses = [\"10.1.0.2\"]\n\n[[network]]\nname = \"iot\"\ncidrs = [\"10.4.0.0/16\"]\naddresses = [\"10.4.0.2\"]\n");
    let c = lg.wait_config("both files applied", |c| {
        services(c).len() == 2 && c["last_reload"]["result"] == "success"
    });
    assert_eq!(services(&c), ["app", "cam"]);
    assert!(
        c["networks"]
            .as_array()
            .expect("networks")
            .iter()
            .any(|n| n == "iot")
    );
    // A change under .git is not a configuration change.
    let before = generation(&c);
    cfg.write("conf/.git/HEAD", "ref: refs/heads/main\n");
    let (code, _) = lg.admin("POST", "/reload");
    assert_eq!(code, 200);
    assert_eq!(
        generation(&lg.config()),
        before,
        "unchanged sources keep the generation"
    );
}

#[test]
fn invalid_edit_keeps_the_old_generation_and_reports_the_error() {
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", &config_with_services(&["app"]));
    let lg = start(&cfg, "labgate.toml");
    let broken = config_with_services(&["app"]).replace("allow = [\"lan\"]", "allow = [\"lann\"]");
    cfg.write("labgate.toml", &broken);
    let c = lg.wait_config("the rejection", |c| c["last_reload"]["result"] == "failure");
    assert_eq!(generation(&c), 1, "the old snapshot keeps serving");
    assert_eq!(services(&c), ["app"]);
    let errors = c["last_reload"]["errors"].to_string();
    assert!(
        errors.contains("labgate.toml:12:10"),
        "file:line:col in {errors}"
    );
    assert!(errors.contains("no network named `lann`"), "{errors}");
    let (_, metrics) = lg.admin("GET", "/metrics");
    assert!(
        metrics.contains("labgate_config_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("labgate_config_last_reload_successful 0"),
        "{metrics}"
    );
    assert!(metrics.contains("labgate_config_generation 1"), "{metrics}");
    // Fixing it publishes generation 2.
    cfg.write("labgate.toml", &config_with_services(&["app", "fixed"]));
    let c = lg.wait_config("generation 2", |c| generation(c) == 2);
    assert_eq!(c["last_reload"]["result"], "success");
}

#[test]
fn sighup_and_admin_reload_use_the_same_pipeline() {
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", &config_with_services(&["app"]));
    let lg = start(&cfg, "labgate.toml");
    let (code, body) = lg.admin("POST", "/reload");
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON report");
    assert_eq!(report["result"], "unchanged");
    let status = std::process::Command::new("kill")
        .args(["-HUP", &lg.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = std::time::Instant::now() + support::RELOAD_TIMEOUT;
    loop {
        let (_, metrics) = lg.admin("GET", "/metrics");
        if metrics.contains("labgate_config_reloads_total{result=\"unchanged\"} 2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "SIGHUP reload not counted: {metrics}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A broken file through the admin call answers 422 with the errors.
    cfg.write("labgate.toml", "[[network]]\nname = \n");
    let (code, body) = lg.admin("POST", "/reload");
    assert_eq!(code, 422, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("JSON report");
    assert_eq!(report["result"], "failure");
    assert!(
        report["errors"][0]
            .as_str()
            .unwrap_or("")
            .contains("labgate.toml:2:"),
        "{report:#}"
    );
}

#[test]
fn health_readiness_and_unknown_paths() {
    let cfg = ConfigDir::new();
    cfg.write("labgate.toml", &config_with_services(&["app"]));
    let lg = start(&cfg, "labgate.toml");
    assert_eq!(lg.admin("GET", "/healthz"), (200, "ok\n".to_owned()));
    assert_eq!(lg.admin("GET", "/readyz"), (200, "ready\n".to_owned()));
    assert_eq!(lg.admin("GET", "/nope").0, 404);
    assert_eq!(lg.admin("DELETE", "/config").0, 405);
    let c = lg.config();
    assert_eq!(c["hash"].as_str().map(str::len), Some(64));
    assert_eq!(c["last_reload"]["result"], "initial");
}
