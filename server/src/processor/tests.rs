//! Unit tests of the processor's pure parts: folder names from disk and what QR codes mean.

use super::*;
use crate::photos;

#[test]
fn names_from_disk_cannot_escape_their_folder() {
    let dir = Path::new("/out");
    assert!(inside(dir, "../etc/passwd").is_err());
    assert!(inside(dir, "..").is_err());
    assert!(inside(dir, "a/b.jpg").is_err());
    assert!(inside(dir, "").is_err());
    assert_eq!(
        inside(dir, "IMG_0001.jpg").unwrap(),
        Path::new("/out/IMG_0001.jpg")
    );
    assert_eq!(slug("../../Ada Lovelace!"), "ada-lovelace");
    assert_eq!(slug("///"), "person");
    assert!(inside(dir, "a\\..\\b.jpg")
        .unwrap_err()
        .contains("separator"));
    assert_eq!(
        inside(dir, "Café ü 写真 (1).jpg").unwrap(),
        Path::new("/out/Café ü 写真 (1).jpg")
    );
    assert_eq!(inside(dir, "..jpg").unwrap(), Path::new("/out/..jpg"));
}

#[test]
fn qr_codes_mean_a_person_only_when_there_is_one_well_formed_registration() {
    let reg = |e: &str| format!("{}{e}", photos::QR_PREFIX);
    let of = |p: &[String]| qr_meaning(p);
    assert_eq!(of(&[]), QrMeaning::None);
    assert_eq!(
        of(&[reg("ada@example.org")]),
        QrMeaning::Registration(reg("ada@example.org"))
    );
    // A registration beside a poster's code still starts the person.
    assert_eq!(
        of(&["https://example.org".into(), reg("ada@example.org")]),
        QrMeaning::Registration(reg("ada@example.org"))
    );
    match of(&["https://example.org".into()]) {
        QrMeaning::Foreign(note) => {
            assert!(note.contains("https://example.org"), "{note}");
            assert!(note.contains("not a registration"), "{note}");
        }
        other => panic!("{other:?}"),
    }
    for bad in ["", "nobody", "@example.org", "ada@", "a b@example.org"] {
        match of(&[reg(bad)]) {
            QrMeaning::Refused(reason) => {
                assert!(reason.contains("malformed registration"), "{reason}");
                assert!(reason.contains(&format!("{bad:?}")), "{reason}");
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    match of(&[reg("ada@example.org"), reg("bob@example.org")]) {
        QrMeaning::Refused(reason) => {
            assert!(reason.starts_with("2 registration QR codes"), "{reason}");
            assert!(reason.contains("bob@example.org"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
