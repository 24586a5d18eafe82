//! Hosts as Linux network namespaces, for partition tests: each [`NetHost`] is a
//! namespace joined to this host by veth pairs ("links"), each link a /30 of its
//! own. A server listening on this host is reached from the namespace at
//! [`NetHost::gateway`]; cutting a link ([`NetHost::cut`]) takes this host's end
//! down, so the namespace's packets on it go nowhere, as when a host's network
//! fails. Needs root (`ip netns`); the namespace is deleted on drop.

use std::{
    net::Ipv4Addr,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One namespace and its links to this host.
pub struct NetHost {
    name: String,
    links: Vec<Link>,
}

struct Link {
    outer: String,
    gateway: Ipv4Addr,
    inner: Ipv4Addr,
}

fn ip(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl NetHost {
    /// Creates a namespace with `links` veth links to this host.
    pub fn create(links: usize) -> std::io::Result<Self> {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = std::process::id().wrapping_mul(31).wrapping_add(n) % 4000;
        let name = format!("gq{}n{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        let mut host = NetHost {
            name,
            links: Vec::new(),
        };
        host.exec_ip(&["link", "set", "lo", "up"])?;
        for l in 0..links {
            // 10.(100 + link).(id / 64).(id % 64 * 4) /30: .1 this host, .2 the namespace
            let third = (id / 64) as u8;
            let base = ((id % 64) * 4) as u8;
            let octet = 100 + l as u8;
            let gateway = Ipv4Addr::new(10, octet, third, base + 1);
            let inner_ip = Ipv4Addr::new(10, octet, third, base + 2);
            let outer = format!("{}o{l}", host.name);
            let inner = format!("{}i{l}", host.name);
            ip(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ])?;
            ip(&["link", "set", &inner, "netns", &host.name])?;
            ip(&["addr", "add", &format!("{gateway}/30"), "dev", &outer])?;
            ip(&["link", "set", &outer, "up"])?;
            host.exec_ip(&["addr", "add", &format!("{inner_ip}/30"), "dev", &inner])?;
            host.exec_ip(&["link", "set", &inner, "up"])?;
            host.links.push(Link {
                outer,
                gateway,
                inner: inner_ip,
            });
        }
        Ok(host)
    }

    fn exec_ip(&self, args: &[&str]) -> std::io::Result<()> {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This host's address on link `link`, as the namespace reaches it.
    pub fn gateway(&self, link: usize) -> Ipv4Addr {
        self.links[link].gateway
    }

    /// The namespace's own address on link `link` (where its calls come from).
    pub fn address(&self, link: usize) -> Ipv4Addr {
        self.links[link].inner
    }

    /// Program and arguments that run `program` inside the namespace (for
    /// [`crate::ChildProcess::spawn`]: `ip netns exec` execs it, the pid is its own).
    pub fn wrap<'a>(&'a self, program: &'a str, args: &[&'a str]) -> (&'static str, Vec<&'a str>) {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        ("ip", all)
    }

    /// Cuts link `link`: nothing passes until [`NetHost::restore`].
    pub fn cut(&self, link: usize) -> std::io::Result<()> {
        ip(&["link", "set", &self.links[link].outer, "down"])
    }

    /// Brings link `link` back.
    pub fn restore(&self, link: usize) -> std::io::Result<()> {
        ip(&["link", "set", &self.links[link].outer, "up"])
    }
}

impl Drop for NetHost {
    fn drop(&mut self) {
        for l in &self.links {
            let _ = ip(&["link", "del", &l.outer]);
        }
        let _ = ip(&["netns", "del", &self.name]);
    }
}
