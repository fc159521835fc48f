//! Fetching a document's `url` source: http(s) only, within a size cap and a time limit, with
//! every redirect checked again, and addresses inside the cluster's reach (private, loopback,
//! link-local, ...) refused unless allowed. A URL a customer supplies must not become a way to
//! read the platform's internal services.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

/// What a fetch may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPolicy {
    /// The most bytes a source may have.
    pub max_bytes: usize,
    /// The time limit of the whole fetch, redirects included.
    pub timeout: Duration,
    /// Redirects followed at most.
    pub max_redirects: usize,
    /// Whether private, loopback and link-local addresses may be fetched (tests, trusted
    /// installations).
    pub allow_private: bool,
}

impl Default for FetchPolicy {
    fn default() -> Self {
        Self { max_bytes: 50_000_000, timeout: Duration::from_secs(30), max_redirects: 5, allow_private: false }
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The policy forbids the URL: not http(s), an internal address, a port other than 80/443.
    #[error("{0}")]
    NotAllowed(String),
    /// The body is larger than the size cap.
    #[error("{0}")]
    TooLarge(String),
    /// The URL or the server's answer will not do (invalid, a 4xx, a redirect loop); fetching
    /// again cannot help.
    #[error("{0}")]
    Refused(String),
    /// The whole fetch took longer than the time limit; a later attempt may succeed.
    #[error("{0}")]
    TimedOut(String),
    /// The server could not be reached or failed (a 5xx, 408, 429); a later attempt may succeed.
    #[error("{0}")]
    Unreachable(String),
}

impl FetchError {
    /// Whether another attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, FetchError::TimedOut(_) | FetchError::Unreachable(_))
    }

    /// A bounded label for metrics and for the failure message, which the operator maps to a
    /// condition reason.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::NotAllowed(_) => "url_not_allowed",
            FetchError::TooLarge(_) => "url_too_large",
            FetchError::Refused(_) => "url_refused",
            FetchError::TimedOut(_) => "url_timed_out",
            FetchError::Unreachable(_) => "url_unreachable",
        }
    }

    /// What a person can do about it.
    pub fn advice(&self) -> &'static str {
        match self {
            FetchError::NotAllowed(_) => "use a public http(s) URL on port 80 or 443, or upload the document",
            FetchError::TooLarge(_) => "upload a smaller document or raise the size limit",
            FetchError::Refused(_) => "fix the URL or upload the document",
            FetchError::TimedOut(_) | FetchError::Unreachable(_) => "it will be retried",
        }
    }
}

/// Whether `address` is one a customer's URL must not reach: anything that is not a public
/// unicast address.
pub fn is_internal(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // Addresses that carry an IPv4 address are judged by it: mapped (::ffff:a.b.c.d),
            // compatible (::a.b.c.d), NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 (2002::/16).
            let embedded = |hi: u16, lo: u16| std::net::Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            if s[..6].iter().all(|x| *x == 0) && !v6.is_loopback() && !v6.is_unspecified() {
                return is_internal(IpAddr::V4(embedded(s[6], s[7])));
            }
            if (s[0] == 0x64 && s[1] == 0xff9b) || s[0] == 0x2002 {
                let v4 = if s[0] == 0x2002 { embedded(s[1], s[2]) } else { embedded(s[6], s[7]) };
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated, still routed by some)
        }
    }
}

/// Fetches `url` under `policy`.
pub async fn fetch(url: &str, policy: &FetchPolicy) -> Result<Vec<u8>, FetchError> {
    match tokio::time::timeout(policy.timeout, fetch_following(url, policy)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::TimedOut(format!(
            "fetching {} took longer than {}s",
            redacted_str(url),
            policy.timeout.as_secs_f32()
        ))),
    }
}

async fn fetch_following(url: &str, policy: &FetchPolicy) -> Result<Vec<u8>, FetchError> {
    let mut current = Url::parse(url).map_err(|e| FetchError::Refused(format!("the url is not a valid URL: {e}")))?;
    for _ in 0..=policy.max_redirects {
        let response = request(&current, policy).await?;
        let status = response.status();
        if status.is_redirection() {
            let location =
                response.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()).ok_or_else(|| {
                    FetchError::Refused(format!("{} redirects without a Location", redacted(&current)))
                })?;
            current = current
                .join(location)
                .map_err(|e| FetchError::Refused(format!("{} redirects to an invalid URL: {e}", redacted(&current))))?;
            continue;
        }
        let shown = redacted(&current);
        // Server errors, timeouts and rate limits may pass; other answers will not change.
        if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            return Err(FetchError::Unreachable(format!("{shown} answered HTTP {status}")));
        }
        if !status.is_success() {
            return Err(FetchError::Refused(format!("{shown} answered HTTP {status}")));
        }
        return read_capped(response, &current, policy.max_bytes).await;
    }
    Err(FetchError::Refused(format!("{} redirects more than {} times", redacted_str(url), policy.max_redirects)))
}

/// One request to `url`, on an address that passed the policy: the connection is pinned to the
/// address that was checked, so a second DNS answer cannot swap it for an internal one.
async fn request(url: &Url, policy: &FetchPolicy) -> Result<reqwest::Response, FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::NotAllowed(format!("{}: only http and https URLs are fetched", redacted(url))));
    }
    let host = url.host_str().ok_or_else(|| FetchError::Refused(format!("{} has no host", redacted(url))))?;
    let port = url.port_or_known_default().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| FetchError::Unreachable(format!("cannot resolve {host}: {e}")))?
        .collect();
    let Some(address) = addresses.iter().copied().find(|a| policy.allow_private || !is_internal(a.ip())) else {
        return Err(FetchError::NotAllowed(format!(
            "{host} resolves only to private, loopback or link-local addresses, which are not fetched"
        )));
    };
    // Public web servers answer on 80 and 443; other ports of a public address may be a node's
    // kubelet or NodePorts.
    if !policy.allow_private && !matches!(port, 80 | 443) {
        return Err(FetchError::NotAllowed(format!("{}: only ports 80 and 443 are fetched", redacted(url))));
    }

    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would resolve the name again, past the address check.
        .no_proxy()
        .resolve(bare, address)
        .user_agent(concat!("prospector-embedder/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| FetchError::Unreachable(format!("HTTP client: {e}")))?;
    client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| FetchError::Unreachable(format!("fetching {}: {}", redacted(url), e.without_url())))
}

fn redacted_str(url: &str) -> String {
    Url::parse(url).map(|u| redacted(&u)).unwrap_or_else(|_| "the url".into())
}

/// The URL as it may be shown in statuses and logs: without credentials or query string, which
/// often carry secrets (presigned links).
pub fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    if shown.query().is_some() {
        shown.set_query(Some("…"));
    }
    shown.to_string()
}

/// Reads the body, refusing it as soon as it passes `max_bytes`.
async fn read_capped(mut response: reqwest::Response, url: &Url, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge(format!("{} is larger than the limit of {max_bytes} bytes", redacted(url)));
    if response.content_length().is_some_and(|n| n > max_bytes as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| FetchError::Unreachable(format!("reading {}: {}", redacted(url), e.without_url())))?
    {
        if body.len() + chunk.len() > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.8",
            "fec0::1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:0a00:0001::1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "64:ff9b::808:808", "2002:0808:0808::1"] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn only_http_urls_to_public_addresses_are_fetched_by_default() {
        let policy = FetchPolicy::default();
        let refused = fetch("ftp://example.com/doc.pdf", &policy).await.unwrap_err();
        assert!(!refused.is_retryable() && refused.to_string().contains("only http and https"), "{refused}");
        let metadata = fetch("http://169.254.169.254/latest/meta-data/", &policy).await.unwrap_err();
        assert!(!metadata.is_retryable() && metadata.to_string().contains("private"), "{metadata}");
        let loopback = fetch("http://127.0.0.1/", &policy).await.unwrap_err();
        assert!(loopback.to_string().contains("private"), "{loopback}");
        let kubelet = fetch("http://93.184.216.34:10250/pods", &policy).await.unwrap_err();
        assert!(!kubelet.is_retryable() && kubelet.to_string().contains("ports 80 and 443"), "{kubelet}");
        for forbidden in [&refused, &metadata, &loopback, &kubelet] {
            assert_eq!(forbidden.label(), "url_not_allowed", "{forbidden}");
        }
        assert!(fetch("not a url", &policy).await.unwrap_err().to_string().contains("not a valid URL"));
        let secret = fetch("http://user:hunter2@127.0.0.1/doc?token=s3cr3t", &policy).await.unwrap_err().to_string();
        assert!(!secret.contains("hunter2") && !secret.contains("s3cr3t"), "{secret}");
    }
}
