//! Which worker images' wool this process's wool works with: versions read as
//! PEP 440 ones (as wool reads them), not as text.
//!
//! wool's proxy admits a discovered worker only if the worker's version parses
//! and is at least its own within the same major; anything else it hides
//! without a word. While wool is 0.x a minor release may change its protocol
//! (wool-docker itself pins one minor), so the minors must match too.

use std::str::FromStr;

use pep440_rs::Version;

/// Whether a worker whose image has wool `image` can serve this process, whose
/// wool is `owner`; if not, what was found, what is needed and why.
pub fn check_wool(image: &str, owner: &str) -> Result<(), String> {
    let parse = |v: &str| Version::from_str(v).ok();
    let Some(ours) = parse(owner) else {
        return Err(format!(
            "this process runs wool {owner:?}, which is not a PEP 440 version; \
             wool admits no worker while its own version does not parse"
        ));
    };
    let Some(theirs) = parse(image) else {
        return Err(format!(
            "it serves wool {image:?}, which is not a PEP 440 version; \
             wool admits no worker whose version does not parse"
        ));
    };
    let part = |v: &Version, i: usize| v.release().get(i).copied().unwrap_or(0);
    let (major, minor) = (part(&ours, 0), part(&ours, 1));
    let found = format!("it serves wool {image} and this process runs wool {owner}");
    if part(&theirs, 0) != major {
        return Err(format!(
            "{found}; wool admits only workers of its own major version, {major}"
        ));
    }
    if major == 0 && part(&theirs, 1) != minor {
        return Err(format!(
            "{found}; it needs wool 0.{minor}.x: before 1.0 a minor release of wool \
             may change its protocol, so both sides must run the same minor"
        ));
    }
    if theirs < ours {
        return Err(format!(
            "{found}; it needs wool {owner} or later within {major}.x: wool admits \
             only workers at least as new as itself, and would never use this one \
             (rebuild the image with this process's wool)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_serves_when_the_owners_wool_admits_it() {
        // (image, owner, served)
        let cases = [
            ("0.15.7", "0.15.7", true),
            ("0.15.8", "0.15.7", true),
            ("0.15.6", "0.15.7", false),
            ("0.16.0", "0.15.7", false),
            ("0.14.9", "0.15.7", false),
            ("1.0.0", "0.15.7", false),
            ("0.15.7", "1.0.0", false),
            ("1.3.0", "1.2.0", true),
            ("1.1.9", "1.2.0", false),
            ("2.0.0", "1.2.0", false),
            // Pre-releases and development releases, in PEP 440's order.
            ("0.15.8rc1", "0.15.7", true),
            ("0.15.7rc1", "0.15.7", false),
            ("0.15.7.dev3", "0.15.7", false),
            ("0.15.7", "0.15.7.dev3", true),
            ("0.15.7.post1", "0.15.7", true),
            ("0.15.7+local", "0.15.7", true),
            ("0.15", "0.15.0", true),
        ];
        for (image, owner, served) in cases {
            assert_eq!(
                check_wool(image, owner).is_ok(),
                served,
                "image {image}, owner {owner}: {:?}",
                check_wool(image, owner)
            );
        }
    }

    #[test]
    fn a_refusal_says_what_was_found_what_is_needed_and_why() {
        let older = check_wool("0.15.6", "0.15.7").err().unwrap_or_default();
        assert!(older.contains("wool 0.15.6"), "{older}");
        assert!(older.contains("0.15.7 or later"), "{older}");
        assert!(older.contains("at least as new"), "{older}");
        let minor = check_wool("0.16.0", "0.15.7").err().unwrap_or_default();
        assert!(minor.contains("wool 0.16.0"), "{minor}");
        assert!(minor.contains("needs wool 0.15.x"), "{minor}");
        let major = check_wool("99.0.0", "0.15.7").err().unwrap_or_default();
        assert!(major.contains("wool 99.0.0"), "{major}");
        assert!(major.contains("major version, 0"), "{major}");
    }

    #[test]
    fn an_unparseable_version_is_refused_by_name() {
        let image = check_wool("banana", "0.15.7").err().unwrap_or_default();
        assert!(image.contains("wool \"banana\""), "{image}");
        assert!(image.contains("not a PEP 440 version"), "{image}");
        let owner = check_wool("0.15.7", "").err().unwrap_or_default();
        assert!(owner.contains("this process runs wool \"\""), "{owner}");
    }
}
