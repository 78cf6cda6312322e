//! Where this process reaches a worker's port: at the container's address on
//! its network, when this process can route there (it shares the Engine's
//! host network, or sits on the network itself), or else at a port the Engine
//! publishes on its host (Docker Desktop, rootless Docker, a remote Engine).

use std::net::IpAddr;

use ipnet::IpNet;

use super::model::NetworkInfo;

/// Whether Engine address `host` is on this machine: a unix socket, or TCP to
/// a loopback name or address.
pub fn is_local(host: &str) -> bool {
    if host.starts_with("unix://") {
        return true;
    }
    let name = host_name(host).trim_matches(|c| c == '[' || c == ']');
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host part of a `tcp://`, `http(s)://` or `ssh://` Engine address, as it
/// is written in a `host:port` address (an IPv6 one in brackets); empty for
/// any other.
fn host_name(host: &str) -> &str {
    let Some((_, rest)) = host.split_once("://") else {
        return "";
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority.starts_with('[') {
        // `[::1]:2376`: up to the bracket.
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or_default()
}

/// The host that ports published by Engine `host` are reached at from this
/// process: loopback for an Engine on this machine (Docker Desktop and
/// rootless Docker forward theirs there), the Engine's own host otherwise.
pub fn published_host(host: &str) -> String {
    if is_local(host) {
        return "127.0.0.1".to_owned();
    }
    match host_name(host) {
        "" => "127.0.0.1".to_owned(),
        name => name.trim_matches(|c| c == '[' || c == ']').to_owned(),
    }
}

/// The host address a published port is bound to: loopback where the Engine is
/// on this machine (nothing else on the network reaches the worker), every
/// address where it is not (the owner comes from elsewhere).
pub fn bind_address(host: &str) -> &'static str {
    if is_local(host) {
        "127.0.0.1"
    } else {
        ""
    }
}

/// `host:port` of a port the Engine published at `host_ip:host_port`, as this
/// process reaches it: a wildcard or loopback binding is on `published_host`;
/// a binding to one address of the Engine's host is at that address.
pub fn published_address(published_host: &str, host_ip: &str, host_port: u16) -> String {
    let host = match host_ip.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() && !ip.is_loopback() => host_ip,
        _ => published_host,
    };
    if host.contains(':') {
        format!("[{host}]:{host_port}")
    } else {
        format!("{host}:{host_port}")
    }
}

/// Whether this process can route to containers on `network` of Engine
/// `host` (`None`: the Engine did not say what the network is). It can when
/// the Engine is on this machine, in this network namespace, and one of this
/// process's addresses is on one of the network's subnets: the bridge's
/// gateway (the Engine's host) or an address of its own there (an owner in a
/// container on that network). A remote Engine, an Engine in another
/// namespace (rootless Docker, a VM's), or a network none of our interfaces
/// is on (an overlay seen from the host) is reached through published ports.
pub(super) async fn routes_to(host: &str, network: Option<&NetworkInfo>) -> bool {
    if !is_local(host) {
        return false;
    }
    if let Some(socket) = host.strip_prefix("unix://") {
        if in_other_namespace(socket).await == Some(true) {
            return false;
        }
    }
    let Some(network) = network else {
        // Nothing to check against: a local Engine's networks are routed to,
        // as they were before addresses could be published.
        return true;
    };
    let subnets: Vec<IpNet> = network
        .subnets
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let ours = local_addresses();
    subnets
        .iter()
        .any(|net| ours.iter().any(|ip| net.contains(ip)))
}

/// Whether the process serving unix socket `path` is in another network
/// namespace than this one; `None` when that cannot be told (its pid is not
/// visible here, or its namespace is not readable by this user).
async fn in_other_namespace(path: &str) -> Option<bool> {
    let pid = peer_pid(path).await?;
    other_namespace(pid, "net")
}

/// Whether process `pid` is in another namespace of `kind` than this one;
/// `None` when its namespace is not readable by this user.
fn other_namespace(pid: i32, kind: &str) -> Option<bool> {
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
    let ours = std::fs::read_link(format!("/proc/self/ns/{kind}")).ok()?;
    Some(theirs != ours)
}

/// The pid, as this process sees it, of the process serving unix socket
/// `path`; `None` when it runs in a pid namespace this one cannot see.
async fn peer_pid(path: &str) -> Option<i32> {
    let stream = tokio::net::UnixStream::connect(path).await.ok()?;
    stream.peer_cred().ok()?.pid().filter(|pid| *pid > 0)
}

/// Whether a file this process makes can be bind-mounted into Engine
/// `host`'s containers: the Engine is a `dockerd` serving a unix socket from
/// this machine's mount namespace. An owner in a container (the daemon's
/// pid is not visible from there), rootless Docker (its own mount
/// namespace), a VM's or a remote Engine, and whatever else serves a socket
/// (Docker Desktop's proxy, Podman) are not, or not known to be. A rootful
/// daemon's namespace is not readable by an unprivileged user; being on this
/// machine's pid namespace is then enough.
pub(super) async fn shares_files(host: &str) -> bool {
    let Some(socket) = host.strip_prefix("unix://") else {
        return false;
    };
    let Some(pid) = peer_pid(socket).await else {
        return false;
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    comm.trim() == "dockerd" && other_namespace(pid, "mnt") != Some(true)
}

/// This process's interface addresses (none if they cannot be read).
fn local_addresses() -> Vec<IpAddr> {
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter_map(|i| i.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_on_this_machine_are_told_from_remote_ones() {
        for local in [
            "unix:///var/run/docker.sock",
            "tcp://127.0.0.1:2375",
            "tcp://localhost:2375",
            "tcp://[::1]:2376",
            "https://127.0.0.2:2376/",
        ] {
            assert!(is_local(local), "{local}");
            assert_eq!(published_host(local), "127.0.0.1", "{local}");
            assert_eq!(bind_address(local), "127.0.0.1", "{local}");
        }
        for (remote, host) in [
            ("tcp://10.1.2.3:2375", "10.1.2.3"),
            ("tcp://gpu.example:2376", "gpu.example"),
            ("ssh://me@gpu.example", "gpu.example"),
            ("ssh://me@gpu.example:2222", "gpu.example"),
            ("tcp://[fd00::5]:2376", "fd00::5"),
        ] {
            assert!(!is_local(remote), "{remote}");
            assert_eq!(published_host(remote), host, "{remote}");
            assert_eq!(bind_address(remote), "", "{remote}");
        }
    }

    #[test]
    fn a_published_binding_is_reached_where_it_listens() {
        for wildcard in ["", "0.0.0.0", "::", "127.0.0.1", "::1"] {
            assert_eq!(
                published_address("10.1.2.3", wildcard, 32768),
                "10.1.2.3:32768",
                "{wildcard:?}"
            );
        }
        assert_eq!(
            published_address("10.1.2.3", "192.168.5.5", 40000),
            "192.168.5.5:40000"
        );
        assert_eq!(published_address("fd00::5", "::", 7), "[fd00::5]:7");
        assert_eq!(published_address("x", "fd00::6", 7), "[fd00::6]:7");
    }

    #[test]
    fn this_process_has_a_loopback_address() {
        assert!(local_addresses().iter().any(IpAddr::is_loopback));
    }
}
