//! Inputs for labgate's criterion benches: generated configurations of a chosen size.

use std::fmt::Write as _;

/// A valid configuration with `networks` networks (each a /24 and a /64, under a shared
/// /16 to exercise longest-prefix match) and `services` services spread over ten zones, each
/// allowed to a third of the networks, plus one explicit record per two services.
pub fn generated_config(networks: usize, services: usize) -> String {
    let mut s = String::from("[dns]\nupstreams = [\"udp://192.0.2.53\"]\n\n");
    s.push_str(
        "[[network]]\nname = \"site\"\ncidrs = [\"10.0.0.0/8\"]\naddresses = [\"10.0.0.2\"]\n\n",
    );
    for n in 0..networks {
        let _ = write!(
            s,
            "[[network]]\nname = \"net{n}\"\ncidrs = [\"10.{}.{}.0/24\", \"fd00:{n:x}::/64\"]\naddresses = [\"10.{}.{}.2\", \"fd00:{n:x}::2\"]\n\n",
            n / 250,
            n % 250,
            n / 250,
            n % 250
        );
    }
    for z in 0..10 {
        let _ = write!(s, "[[zone]]\nname = \"zone{z}.lab.test\"\n\n");
    }
    for i in 0..services {
        let allow: Vec<String> = (0..networks)
            .filter(|n| (n + i) % 3 == 0)
            .map(|n| format!("\"net{n}\""))
            .collect();
        let _ = write!(
            s,
            "[[service]]\nhost = \"app{i}.zone{}.lab.test\"\nbackends = [\"http://10.200.{}.{}:8080\"]\nallow = [\"site\", {}]\n\n",
            i % 10,
            i / 250,
            i % 250,
            allow.join(", ")
        );
        if i % 2 == 0 {
            let _ = write!(
                s,
                "[[record]]\nname = \"host{i}.zone{}.lab.test\"\ntype = \"A\"\nvalue = \"10.201.{}.{}\"\n\n",
                i % 10,
                i / 250,
                i % 250
            );
        }
    }
    s
}
