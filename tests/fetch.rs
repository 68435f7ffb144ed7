//! `net.fetch` (spec §9.2): URL patterns, redirects re-checked at every hop, private
//! and loopback addresses refused unless the operator allows them, response caps.
//! The upstream is a small HTTP server on loopback.

mod common;

use common::{Client, Host, TOKEN, bundled_plugins};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Serves: `/hello` → "hello"; `/to-secret` → 302 to `/secret`; `/secret` → "secret";
/// `/big` → 2 MiB; `/method` → the request's method.
async fn upstream() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let mut parts = head.split_whitespace();
                let method = parts.next().unwrap_or("").to_owned();
                let path = parts.next().unwrap_or("").to_owned();
                let (status, extra, body): (&str, String, Vec<u8>) = match path.as_str() {
                    "/hello" => ("200 OK", String::new(), b"hello".to_vec()),
                    "/to-secret" => ("302 Found", "Location: /secret\r\n".into(), Vec::new()),
                    "/to-hello" => ("302 Found", "Location: /hello\r\n".into(), Vec::new()),
                    "/secret" => ("200 OK", String::new(), b"secret".to_vec()),
                    "/big" => ("200 OK", String::new(), vec![b'x'; 2 << 20]),
                    "/method" => ("200 OK", String::new(), method.into_bytes()),
                    _ => ("404 Not Found", String::new(), Vec::new()),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    port
}

fn host_with(net: &str) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("arcp.toml");
    std::fs::write(&cfg, format!("[net]\n{net}\n")).unwrap();
    let host = Host::start(&bundled_plugins(), &["--config", cfg.to_str().unwrap()]);
    (dir, host)
}

async fn fetch(c: &mut Client, input: Value, lease: Value) -> Value {
    let acc = c
        .submit(json!({"agent": "fetcher", "input": input, "lease_request": {"net.fetch": lease}}))
        .await;
    assert_eq!(acc["type"], "job.accepted", "{acc}");
    c.until_terminal().await.pop().unwrap()
}

#[tokio::test]
async fn a_granted_url_is_fetched() {
    let port = upstream().await;
    let (_d, host) = host_with("allow_private = true");
    let mut c = Client::connect(&host.url, TOKEN).await;
    let end = fetch(
        &mut c,
        json!({"url": format!("http://127.0.0.1:{port}/hello")}),
        json!([format!("http://127.0.0.1:{port}/**")]),
    )
    .await;
    assert_eq!(
        end["payload"]["result"],
        json!({"status": 200, "body": "hello"}),
        "{end}"
    );
    let end = fetch(
        &mut c,
        json!({"url": format!("http://127.0.0.1:{port}/method"), "method": "post", "body": "x"}),
        json!([format!("http://127.0.0.1:{port}/method")]),
    )
    .await;
    assert_eq!(end["payload"]["result"]["body"], "POST");
    // A redirect that stays inside the grant is followed.
    let end = fetch(
        &mut c,
        json!({"url": format!("http://127.0.0.1:{port}/to-hello")}),
        json!([format!("http://127.0.0.1:{port}/**")]),
    )
    .await;
    assert_eq!(end["payload"]["result"]["body"], "hello");
}

#[tokio::test]
async fn urls_and_redirects_outside_the_grant_are_refused() {
    let port = upstream().await;
    let (_d, host) = host_with("allow_private = true");
    let mut c = Client::connect(&host.url, TOKEN).await;
    let lease = json!([
        format!("http://127.0.0.1:{port}/hello"),
        format!("http://127.0.0.1:{port}/to-*")
    ]);
    let end = fetch(
        &mut c,
        json!({"url": format!("http://127.0.0.1:{port}/secret")}),
        lease.clone(),
    )
    .await;
    assert_eq!(end["payload"]["code"], "PERMISSION_DENIED", "{end}");
    let end = fetch(
        &mut c,
        json!({"url": format!("http://127.0.0.1:{port}/to-secret")}),
        lease.clone(),
    )
    .await;
    assert_eq!(
        end["payload"]["code"], "PERMISSION_DENIED",
        "the redirect's target is checked: {end}"
    );
    assert!(
        end["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("/secret")
    );
    let end = fetch(
        &mut c,
        json!({"url": format!("https://127.0.0.1:{port}/hello")}),
        lease,
    )
    .await;
    assert_eq!(
        end["payload"]["code"], "PERMISSION_DENIED",
        "scheme is part of the grant"
    );
}

#[tokio::test]
async fn loopback_is_refused_by_default_by_address_and_by_name() {
    let port = upstream().await;
    let (_d, host) = host_with("allow_private = false");
    let mut c = Client::connect(&host.url, TOKEN).await;
    for url in [
        format!("http://127.0.0.1:{port}/hello"),
        format!("http://localhost:{port}/hello"),
        format!("http://[::ffff:127.0.0.1]:{port}/hello"),
    ] {
        let end = fetch(&mut c, json!({"url": url}), json!(["http://*:*/**"])).await;
        assert_eq!(end["type"], "job.error", "{url}: {end}");
        assert_eq!(end["payload"]["code"], "PERMISSION_DENIED", "{url}: {end}");
    }
}

#[tokio::test]
async fn a_response_over_the_cap_is_refused() {
    let port = upstream().await;
    let (_d, host) = host_with("allow_private = true\nmax_response_mib = 1");
    let mut c = Client::connect(&host.url, TOKEN).await;
    let end = fetch(
        &mut c,
        json!({"url": format!("http://127.0.0.1:{port}/big")}),
        json!([format!("http://127.0.0.1:{port}/**")]),
    )
    .await;
    assert_eq!(end["payload"]["code"], "INVALID_REQUEST", "{end}");
    assert!(
        end["payload"]["message"]
            .as_str()
            .unwrap()
            .contains("limit")
    );
}
