//! Checks `zchroot::archive::version::compare` against the real
//! `dpkg --compare-versions` on thousands of generated version pairs.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::process::Command;

use zchroot::archive::version::compare;

/// How many generated pairs to check (plus the hand-picked ones).
const GENERATED_PAIRS: usize = 6000;

/// splitmix64: tiny, deterministic, good enough to pick test cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }

    fn pick_byte(&mut self, items: &[u8]) -> char {
        char::from(items[self.below(items.len())])
    }
}

/// Whether dpkg accepts `v` without error or warning (`parseversion()` in
/// dpkg's lib/dpkg/parsehelp.c). Written independently of the crate's
/// `validate` so that the generator does not trust the code under test.
fn dpkg_accepts(v: &str) -> bool {
    let rest = match v.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty()
                || !epoch.bytes().all(|c| c.is_ascii_digit())
                || epoch.trim_start_matches('0').len() > 10
                || epoch.parse::<u64>().map_or(true, |e| e > 2147483647)
                || rest.is_empty()
            {
                return false;
            }
            rest
        }
        None => v,
    };
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((_, "")) => return false,
        Some((u, r)) => (u, r),
        None => (rest, ""),
    };
    upstream.bytes().next().is_some_and(|c| c.is_ascii_digit())
        && upstream
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~-:".contains(&c))
        && revision
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".+~".contains(&c))
}

/// A run of digits: usually short, sometimes with leading zeros, sometimes
/// longer than any integer type.
fn digit_run(rng: &mut Rng, s: &mut String) {
    let len = match rng.below(10) {
        0 => 20 + rng.below(25),
        1 | 2 => 3 + rng.below(4),
        _ => 1 + rng.below(2),
    };
    if rng.chance(15) {
        for _ in 0..1 + rng.below(3) {
            s.push('0');
        }
    }
    for _ in 0..len {
        s.push(rng.pick_byte(b"0011223456789"));
    }
}

fn piece(rng: &mut Rng, s: &mut String, hyphen: bool, colon: bool) {
    match rng.below(12) {
        0..=3 => digit_run(rng, s),
        4 | 5 => {
            for _ in 0..1 + rng.below(3) {
                s.push(rng.pick_byte(b"aabzzAZdfsgrc"));
            }
        }
        6 | 7 => s.push('.'),
        8 => s.push('+'),
        9 => s.push_str(rng.pick(&["~", "~", "~~"])),
        10 if hyphen => s.push('-'),
        11 if colon => s.push(':'),
        _ => s.push('.'),
    }
}

fn gen_version(rng: &mut Rng) -> String {
    let mut s = String::new();
    let epoch = rng.chance(25);
    if epoch {
        s.push_str(rng.pick(&["0", "1", "1", "2", "01", "00", "10", "9", "123456789"]));
        s.push(':');
    }
    let revision = rng.chance(55);
    digit_run(rng, &mut s);
    for _ in 0..rng.below(7) {
        piece(rng, &mut s, revision, epoch);
    }
    if revision {
        s.push('-');
        for _ in 0..1 + rng.below(4) {
            piece(rng, &mut s, false, false);
        }
    }
    s
}

/// Small edits of `v`, so that many pairs are close or equal.
fn mutate(rng: &mut Rng, v: &str) -> String {
    const ALPHABET: &[u8] = b"00123456789abzAZ.+~~-:";
    for _ in 0..100 {
        let mut chars: Vec<char> = v.chars().collect();
        for _ in 0..1 + rng.below(2) {
            let at = rng.below(chars.len() + 1);
            match rng.below(9) {
                // Equivalent spellings: leading zeros, explicit zero epoch,
                // explicit zero revision.
                0 => {
                    let digit_at: Vec<usize> = (0..chars.len())
                        .filter(|&i| chars[i].is_ascii_digit())
                        .collect();
                    if let Some(&i) = digit_at.get(rng.below(digit_at.len().max(1))) {
                        if i == 0 || !chars[i - 1].is_ascii_digit() {
                            chars.insert(i, '0');
                        }
                    }
                }
                1 if !chars.contains(&':') => chars.splice(0..0, "0:".chars()).for_each(drop),
                2 if !chars.contains(&'-') => chars.extend("-0".chars()),
                3 | 4 if at < chars.len() => chars[at] = rng.pick_byte(ALPHABET),
                5 if at < chars.len() => {
                    chars.remove(at);
                }
                6 => chars.extend(
                    rng.pick(&["~", "~rc1", "+b1", ".0", "a", "0", "-1"])
                        .chars(),
                ),
                _ => chars.insert(at, rng.pick_byte(ALPHABET)),
            }
        }
        let s: String = chars.into_iter().collect();
        if dpkg_accepts(&s) {
            return s;
        }
    }
    v.to_owned()
}

fn hand_picked() -> Vec<(String, String)> {
    let pairs: &[(&str, &str)] = &[
        ("1.0~rc1", "1.0"),
        ("1:0.1", "2.0"),
        ("1.0a", "1.0+"),
        ("1.0-1", "1.0-1.1"),
        ("2.30-1~bpo", "2.30-1"),
        ("1.0", "1.0-0"),
        ("1.0", "0:1.0"),
        ("1.0", "00:1.0-0"),
        ("1.0~", "1.0"),
        ("1.0~~", "1.0~"),
        ("1.0", "1.0.0"),
        ("1.0Z", "1.0a"),
        ("1.00a", "1.a"),
        ("1.001", "1.1"),
        ("1:1:2", "1:1.2"),
        ("1.0-2-1", "1.0-10-0"),
        ("2.36-9+deb12u4", "2.36-9"),
        (
            "1.123456789012345678901234567890",
            "1.123456789012345678901234567891",
        ),
        (
            "1.99999999999999999999999999999999",
            "1.100000000000000000000000000000000",
        ),
        ("0", "0~"),
        ("0a", "0A"),
        ("1+", "1."),
        ("1.", "1~"),
        ("2147483647:1", "2147483646:9"),
    ];
    pairs
        .iter()
        .map(|&(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
}

fn generate_pairs() -> Vec<(String, String)> {
    let mut rng = Rng(0x5eed_d0c5_2024_0001);
    let mut pairs = hand_picked();
    while pairs.len() < GENERATED_PAIRS + hand_picked().len() {
        let a = gen_version(&mut rng);
        let b = match rng.below(10) {
            0..=2 => gen_version(&mut rng),
            3 => a.clone(),
            _ => mutate(&mut rng, &a),
        };
        pairs.push((a, b));
    }
    for (a, b) in &pairs {
        assert!(
            dpkg_accepts(a) && dpkg_accepts(b),
            "bad generated pair {a:?} {b:?}"
        );
    }
    pairs
}

/// Whether `dpkg` can be run; `None` when it is not installed.
fn dpkg_available() -> Option<()> {
    match Command::new("dpkg").arg("--version").output() {
        Ok(_) => Some(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("cannot run dpkg: {e}"),
    }
}

/// Runs all comparisons through one `sh` process and returns dpkg's answer
/// for each pair: "lt", "eq" or "gt" (anything else is an error report).
fn dpkg_compare_all(pairs: &[(String, String)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = pairs.len().div_ceil(jobs);

    let mut script = String::from(
        "c() {\n\
         \x20 dpkg --compare-versions \"$1\" lt \"$2\"; r=$?\n\
         \x20 if [ $r -eq 0 ]; then echo lt; return; fi\n\
         \x20 if [ $r -ne 1 ]; then echo \"error $r (lt)\"; return; fi\n\
         \x20 dpkg --compare-versions \"$1\" eq \"$2\"; r=$?\n\
         \x20 case $r in 0) echo eq;; 1) echo gt;; *) echo \"error $r (eq)\";; esac\n\
         }\n",
    );
    // Each chunk runs in a background subshell writing its own file; the
    // files are concatenated in order at the end.
    for (i, part) in pairs.chunks(chunk.max(1)).enumerate() {
        script.push_str("(\n");
        for (a, b) in part {
            assert!(!a.contains('\'') && !b.contains('\''));
            writeln!(script, "c '{a}' '{b}'").unwrap();
        }
        writeln!(script, ") > out.{i} &").unwrap();
    }
    script.push_str("wait\n");
    let chunks = pairs.len().div_ceil(chunk.max(1));
    for i in 0..chunks {
        writeln!(script, "cat out.{i}").unwrap();
    }
    let path = dir.path().join("compare.sh");
    std::fs::write(&path, script).expect("write script");

    let output = Command::new("sh")
        .arg(&path)
        .current_dir(dir.path())
        .env("LC_ALL", "C")
        .output()
        .expect("run sh");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "the dpkg comparison script failed ({}); dpkg may have rejected or warned about a \
         generated version:\n{stderr}",
        output.status
    );
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let results: Vec<String> = stdout.lines().map(str::to_owned).collect();
    assert_eq!(
        results.len(),
        pairs.len(),
        "dpkg script printed {} results for {} pairs",
        results.len(),
        pairs.len()
    );
    results
}

#[test]
fn compare_matches_dpkg() {
    let pairs = generate_pairs();
    assert!(pairs.len() >= 5000);

    if dpkg_available().is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("dpkg not found, and CI is set: dpkg is required to check version order");
        }
        // Written to the real stderr, past the test harness's capture, so
        // that the skip is seen.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "SKIP: dpkg not found; install dpkg to compare versions against it"
        );
        return;
    }

    let expected = dpkg_compare_all(&pairs);
    let mut mismatches = Vec::new();
    let mut tally = [0usize; 3];
    for ((a, b), dpkg) in pairs.iter().zip(&expected) {
        let ours = match compare(a, b) {
            Ordering::Less => "lt",
            Ordering::Equal => "eq",
            Ordering::Greater => "gt",
        };
        let antisymmetric = compare(b, a) == compare(a, b).reverse();
        if ours != dpkg || !antisymmetric {
            let note = if antisymmetric {
                ""
            } else {
                " (and compare(b, a) is not the reverse)"
            };
            mismatches.push(format!(
                "{a:?} vs {b:?}: zchroot says {ours}, dpkg says {dpkg}{note}"
            ));
        }
        match dpkg.as_str() {
            "lt" => tally[0] += 1,
            "eq" => tally[1] += 1,
            "gt" => tally[2] += 1,
            _ => {}
        }
    }
    eprintln!(
        "compared {} pairs with dpkg: {} lt, {} eq, {} gt",
        pairs.len(),
        tally[0],
        tally[1],
        tally[2]
    );
    if !mismatches.is_empty() {
        panic!(
            "{} of {} pairs differ from dpkg; first ones:\n{}",
            mismatches.len(),
            pairs.len(),
            mismatches[..mismatches.len().min(20)].join("\n")
        );
    }
    // The generator must exercise every outcome substantially.
    assert!(
        tally.iter().all(|&n| n >= pairs.len() / 20),
        "unbalanced outcomes: {tally:?}"
    );
}
