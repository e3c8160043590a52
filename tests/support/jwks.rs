//! Cloudflare Access stand-ins for the tunnel tests: RSA keys made with openssl, tokens
//! signed with them (jsonwebtoken), and a JWKS server on loopback whose key set the test can
//! swap (key rotation). Threads end with the test process.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

/// An RSA signing key.
pub(crate) struct Key {
    pub(crate) kid: String,
    pub(crate) private_pem: Vec<u8>,
    pub(crate) public_pem: Vec<u8>,
    modulus: Vec<u8>,
}

impl Key {
    /// A new 2048-bit key, made by openssl in `dir`.
    pub(crate) fn new(dir: &Path, kid: &str) -> Self {
        let private = dir.join(format!("{kid}.pem"));
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("openssl is needed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let p = private.to_str().expect("utf-8");
        run(&["genrsa", "-out", p, "2048"]);
        let public_pem = run(&["rsa", "-in", p, "-pubout"]);
        let modulus = run(&["rsa", "-in", p, "-noout", "-modulus"]);
        let hex = String::from_utf8_lossy(&modulus)
            .trim()
            .trim_start_matches("Modulus=")
            .to_owned();
        let modulus = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        Self {
            kid: kid.to_owned(),
            private_pem: std::fs::read(&private).expect("key"),
            public_pem,
            modulus,
        }
    }

    /// Its public half as a JWK.
    pub(crate) fn jwk(&self) -> Value {
        json!({"kid": self.kid, "kty": "RSA", "alg": "RS256", "use": "sig", "e": "AQAB", "n": URL_SAFE_NO_PAD.encode(&self.modulus)})
    }

    /// A token with these claims, RS256, this key's id.
    pub(crate) fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&self.private_pem).expect("rsa key");
        jsonwebtoken::encode(&header, claims, &key).expect("sign")
    }
}

/// A JWKS endpoint serving whatever keys it is given.
pub(crate) struct JwksServer {
    /// `http://127.0.0.1:PORT/certs`.
    pub(crate) url: String,
    keys: Arc<Mutex<Value>>,
    /// Fetches served.
    pub(crate) fetches: Arc<Mutex<u32>>,
}

impl JwksServer {
    pub(crate) fn start(keys: &[&Key]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let set = Arc::new(Mutex::new(Value::Null));
        let fetches = Arc::new(Mutex::new(0));
        let (s, f) = (Arc::clone(&set), Arc::clone(&fetches));
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let mut reader = BufReader::new(conn.try_clone().expect("clone"));
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 2 {
                    line.clear();
                }
                let body = s.lock().expect("lock").to_string();
                *f.lock().expect("lock") += 1;
                let mut conn = conn;
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let server = Self {
            url: format!("http://127.0.0.1:{port}/certs"),
            keys: set,
            fetches,
        };
        server.publish(keys);
        server
    }

    /// Serves these keys from now on.
    pub(crate) fn publish(&self, keys: &[&Key]) {
        let jwks: Vec<Value> = keys.iter().map(|k| k.jwk()).collect();
        *self.keys.lock().expect("lock") =
            json!({"keys": jwks, "public_cert": {}, "public_certs": []});
    }
}

/// A token with `alg: none` and no signature.
pub(crate) fn unsigned(claims: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        enc(&json!({"alg": "none", "typ": "JWT"})),
        enc(claims)
    )
}

/// A token signed HS256 with the RSA public key as the secret (the key-confusion attack).
pub(crate) fn hs256_with_public_key(key: &Key, claims: &Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_secret(&key.public_pem),
    )
    .expect("sign")
}
