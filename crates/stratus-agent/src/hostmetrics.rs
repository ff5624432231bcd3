//! The host's own counters for the monitoring service, read from `/proc` (CPU time by
//! mode, memory, load, block devices, NICs) and the file system holding instance disks.
//! Parsing is separate from reading so it is tested on fixed text.

use std::path::Path;

use stratus_api::{CpuSeconds, DiskCounters, HostCounters, NicCounters};

/// Clock ticks per second for `/proc/stat` (USER_HZ, 100 on every Linux we run on).
const USER_HZ: f64 = 100.0;
const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

pub fn read(instance_dir: &Path) -> HostCounters {
    let text = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (size, avail) = crate::identity::fs_bytes(instance_dir).unwrap_or((0, 0));
    let (total, available) = meminfo(&text("/proc/meminfo"));
    let (load1, load5, load15) = loadavg(&text("/proc/loadavg"));
    HostCounters {
        cpu_seconds: cpu(&text("/proc/stat")),
        memory_total_bytes: total,
        memory_available_bytes: available,
        load1,
        load5,
        load15,
        filesystem_size_bytes: size,
        filesystem_avail_bytes: avail,
        disks: diskstats(&text("/proc/diskstats")),
        nics: netdev(&text("/proc/net/dev")),
    }
}

/// The aggregate `cpu` line, ticks → seconds per mode.
pub fn cpu(stat: &str) -> Vec<CpuSeconds> {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return vec![];
    };
    line.split_whitespace()
        .skip(1)
        .zip(CPU_MODES)
        .filter_map(|(v, mode)| {
            Some(CpuSeconds {
                mode: mode.into(),
                seconds: v.parse::<f64>().ok()? / USER_HZ,
            })
        })
        .collect()
}

/// MemTotal and MemAvailable, bytes.
pub fn meminfo(text: &str) -> (i64, i64) {
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kib| kib.parse::<i64>().ok())
            .map_or(0, |kib| kib.saturating_mul(1024))
    };
    (field("MemTotal:"), field("MemAvailable:"))
}

pub fn loadavg(text: &str) -> (f64, f64, f64) {
    let mut it = text
        .split_whitespace()
        .map(|x| x.parse::<f64>().unwrap_or(0.0));
    (
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    )
}

/// Whole disks only (not partitions, loop or ram devices); sectors are 512 bytes.
pub fn diskstats(text: &str) -> Vec<DiskCounters> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = *f.get(2)?;
            // Partitions: `vda1`, `sda2`, `nvme0n1p1`; NVMe disks end in a digit too.
            let partition = if name.starts_with("nvme") {
                name.contains('p')
            } else {
                name.ends_with(|c: char| c.is_ascii_digit())
            };
            let whole = ["vd", "sd", "nvme", "xvd", "hd"]
                .iter()
                .any(|p| name.starts_with(p))
                && !partition;
            if !whole {
                return None;
            }
            let n = |i: usize| f.get(i).and_then(|x| x.parse::<i64>().ok()).unwrap_or(0);
            Some(DiskCounters {
                device: name.into(),
                reads: n(3),
                read_bytes: n(5).saturating_mul(512),
                writes: n(7),
                written_bytes: n(9).saturating_mul(512),
            })
        })
        .collect()
}

/// Every interface but loopback.
pub fn netdev(text: &str) -> Vec<NicCounters> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<i64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            Some(NicCounters {
                device: name.into(),
                receive_bytes: *f.first()?,
                receive_packets: *f.get(1)?,
                transmit_bytes: *f.get(8)?,
                transmit_packets: *f.get(9)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let c = cpu("cpu  1000 20 300 40000 50 0 6 0 0 0\ncpu0 500 10 150 20000 25 0 3 0 0 0\n");
        assert_eq!(c.len(), 8);
        assert_eq!(c[0].mode, "user");
        assert_eq!(c[0].seconds, 10.0);
        assert_eq!(c[3].seconds, 400.0);
        let (t, a) =
            meminfo("MemTotal:       24684132 kB\nMemFree: 1 kB\nMemAvailable:   23800000 kB\n");
        assert_eq!((t, a), (24684132 * 1024, 23800000 * 1024));
        assert_eq!(loadavg("0.52 1.10 2.00 3/512 999\n"), (0.52, 1.10, 2.0));
        let d = diskstats(
            " 254       0 vda 1000 0 2048 10 500 0 4096 20 0 30 30 0 0 0 0\n \
             254       1 vda1 900 0 1800 9 400 0 4000 19 0 28 28 0 0 0 0\n \
             7       0 loop0 1 0 2 0 0 0 0 0 0 0 0 0 0 0 0\n \
             259       0 nvme0n1 5 0 8 0 6 0 16 0 0 0 0 0 0 0 0\n \
             259       1 nvme0n1p1 5 0 8 0 6 0 16 0 0 0 0 0 0 0 0\n",
        );
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].device, "vda");
        assert_eq!(d[0].read_bytes, 2048 * 512);
        assert_eq!(d[0].writes, 500);
        assert_eq!(d[1].device, "nvme0n1");
        let n = netdev(
            "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets\n\
                 lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 5000 40 0 0 0 0 0 0 7000 50 0 0 0 0 0 0\n",
        );
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].device, "eth0");
        assert_eq!((n[0].receive_bytes, n[0].transmit_bytes), (5000, 7000));
        assert_eq!(n[0].transmit_packets, 50);
    }

    #[test]
    fn this_host_reads() {
        let h = read(Path::new("/"));
        assert!(
            h.memory_total_bytes > 0 && h.filesystem_size_bytes > 0,
            "{h:?}"
        );
        assert!(h
            .cpu_seconds
            .iter()
            .any(|c| c.mode == "idle" && c.seconds > 0.0));
    }
}
