//! No input makes loading or compiling panic: garbage, truncated files, mutated files and values
//! of the wrong type all end as diagnostics (or as a valid config).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use trellis_api::{ConfigSet, NodeIdentity, compile_standalone, load_str};

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn exercise(text: &str) {
    match load_str(text, "fuzz.yaml") {
        Ok(resources) => {
            // Duplicates are an error too; compile whatever set is valid.
            if let Ok(set) = ConfigSet::from_resources(resources) {
                let node = NodeIdentity {
                    namespace: "default".into(),
                    ..NodeIdentity::default()
                };
                let cfg = compile_standalone(&set, &node);
                serde_json::to_string(&cfg).unwrap();
                let _ = set.warnings();
            }
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty());
            for d in diagnostics {
                let _ = d.to_string();
            }
        }
    }
}

/// A small deterministic generator, so failures reproduce.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn never_panics() {
    // The YAML parser runs under catch_unwind; count panics anywhere, caught or not.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        previous(info);
    }));

    let odd = [
        "",
        "---",
        "~",
        "garbage",
        "[1, 2, 3]",
        "{",
        "}",
        ": :",
        "\0\0\0",
        "\u{feff}apiVersion: v1",
        "apiVersion: 5\nkind: []\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: x\nspec: 1\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: []\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: 5, http: {}}\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: [a], http: [{route: [{destination: {host: a, port: {number: -1}}, weight: 1e99}]}]}\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\nspec: {hosts: [a], http: [{route: [{destination: {host: a}}], timeout: 99999999999999999999h}]}\n",
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a, labels: {1: 2}}\nspec: {host: a, subsets: [{name: v1, labels: {version: .inf}}]}\n",
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: a}\nspec: {hosts: ['*'], ports: [{number: 0, name: ''}], resolution: DNS, endpoints: [{address: '', ports: {'': 0}}]}\n",
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\nspec: {portLevelMtls: {abc: {mode: STRICT}}}\n",
        "apiVersion: v1\nkind: List\nitems: [1, {kind: List, apiVersion: v1, items: {}}]\n",
        "a: &a [*a]\n",
        "a: !!int x\n",
        "? - complex\n  - key\n: v\n",
        "key: 'unterminated\n",
        "\t- tab",
        &"- ".repeat(500),
        &format!("{}x{}", "[".repeat(200), "]".repeat(200)),
        &format!("{}1{}", "{a: ".repeat(200), "}".repeat(200)),
    ];
    for text in odd {
        exercise(text);
    }

    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bookinfo");
    let mut samples = Vec::new();
    for name in [
        "services.yaml",
        "reviews.yaml",
        "ratings.yaml",
        "destination-rules.yaml",
    ] {
        samples.push(std::fs::read_to_string(dir.join(name)).unwrap());
    }
    // Every truncation of every sample file.
    for text in &samples {
        for (i, _) in text.char_indices() {
            exercise(&text[..i]);
        }
    }
    // Random single-character mutations with YAML-significant characters and odd values.
    let replacements = [
        ":", "-", "[", "]", "{", "}", "&a", "*a", "!!str", "'", "\"", "#", "\n", "  ", "\t", "|",
        ">", "0", "-1", "1.5", "null", "true", "~", "*", "/", ".", "\u{0}", "é",
    ];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..3000 {
        let text = &samples[rng.below(samples.len())];
        let chars: Vec<char> = text.chars().collect();
        let mut mutated = String::new();
        let at = rng.below(chars.len());
        let count = 1 + rng.below(3);
        for (i, c) in chars.iter().enumerate() {
            if i >= at && i < at + count {
                mutated.push_str(replacements[rng.below(replacements.len())]);
            } else {
                mutated.push(*c);
            }
        }
        exercise(&mutated);
    }

    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "some input panicked");
}
