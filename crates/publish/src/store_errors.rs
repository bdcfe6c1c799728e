//! One line a person can act on for an object-store error.
//!
//! object_store's messages nest the request, the retry history and the raw response body
//! (an XML document for S3); the useful part is usually the innermost cause or an error
//! code inside that body.

use std::error::Error as _;

/// What went wrong, in one line: the kind of failure first, the store's own words after.
pub fn explain(error: &object_store::Error) -> String {
    let chain = chain(error);
    let innermost = chain.last().cloned().unwrap_or_default();
    let all = chain.join(" ");
    let detail = one_line(&innermost);
    let kind = match error {
        object_store::Error::NotFound { .. } if all.contains("NoSuchBucket") => {
            "the bucket does not exist"
        }
        object_store::Error::NotFound { .. } => "not found",
        object_store::Error::AlreadyExists { .. } => "already exists",
        object_store::Error::Precondition { .. } => "changed by someone else meanwhile",
        object_store::Error::PermissionDenied { .. } => "permission denied",
        object_store::Error::Unauthenticated { .. } => {
            "the credentials were refused (check the store's credentials in the environment)"
        }
        object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. } => {
            "not supported by this store"
        }
        _ if all.contains("NoSuchBucket") => "the bucket does not exist",
        _ if [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ]
        .iter()
        .any(|code| all.contains(code)) =>
        {
            "the credentials were refused (check the store's credentials in the environment)"
        }
        _ if all.contains("Connection refused")
            || all.contains("tcp connect error")
            || all.contains("dns error")
            || all.contains("error sending request")
            || all.contains("connection closed before message completed")
            || all.contains("Connection reset") =>
        {
            return match endpoint(&all) {
                Some(endpoint) => {
                    format!("cannot reach the store's endpoint {endpoint} ({detail})")
                }
                None => format!("cannot reach the store's endpoint ({detail})"),
            };
        }
        _ if all.contains("timed out") || all.contains("operation timed out") => {
            "the store did not answer in time"
        }
        _ => return detail,
    };
    match s3_code(&all) {
        Some(code) => format!("{kind} ({code})"),
        None if detail.is_empty() => kind.to_string(),
        None => format!("{kind} ({detail})"),
    }
}

/// The object-store failure behind `error`, however deeply a query engine, a Parquet writer
/// or an `io::Error` wrapped it (`io::Error` hides its payload from `source()`).
pub fn find_store_error<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a object_store::Error> {
    let mut current = Some(error);
    while let Some(cause) = current {
        if let Some(found) = cause.downcast_ref::<object_store::Error>() {
            return Some(found);
        }
        current = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => io.source(),
            },
            None => cause.source(),
        };
    }
    None
}

/// Every message in the error's source chain, outermost first.
fn chain(error: &object_store::Error) -> Vec<String> {
    let mut messages = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    messages
}

/// `scheme://host:port` of the URL a failed request went to (the first URL in the text).
fn endpoint(text: &str) -> Option<String> {
    let start = text.find("http://").or_else(|| text.find("https://"))?;
    let url = &text[start..];
    let scheme_end = url.find("://")? + 3;
    let host_end = url[scheme_end..]
        .find(['/', ')', '?', ' '])
        .map_or(url.len(), |end| scheme_end + end);
    Some(url[..host_end].to_string())
}

/// The `<Code>` of an S3 error document, if the message carries one.
fn s3_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    Some(text[start..end].to_string())
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default().trim();
    const MAX: usize = 200;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Cause(&'static str);

    impl std::fmt::Display for Cause {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Cause {}

    fn generic(message: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Cause(message)),
        }
    }

    #[test]
    fn refused_credentials_name_the_s3_code() {
        let error = generic(
            "Client error with status 403 Forbidden: <?xml version=\"1.0\"?>\n<Error><Code>InvalidAccessKeyId</Code><Message>…</Message></Error>",
        );
        assert_eq!(
            explain(&error),
            "the credentials were refused (check the store's credentials in the environment) (InvalidAccessKeyId)"
        );
    }

    #[test]
    fn unreachable_endpoints_say_so() {
        let error = generic("error sending request for url (http://127.0.0.1:1/b/x)");
        assert_eq!(
            explain(&error),
            "cannot reach the store's endpoint http://127.0.0.1:1 (error sending request for url (http://127.0.0.1:1/b/x))"
        );
    }

    #[test]
    fn missing_objects_and_buckets_differ() {
        let missing = object_store::Error::NotFound {
            path: "b/x".to_string(),
            source: Box::new(Cause("404 Not Found")),
        };
        assert!(explain(&missing).starts_with("not found"));
        let bucket = object_store::Error::NotFound {
            path: "b/x".to_string(),
            source: Box::new(Cause("<Error><Code>NoSuchBucket</Code></Error>")),
        };
        assert_eq!(explain(&bucket), "the bucket does not exist (NoSuchBucket)");
    }

    #[test]
    fn unknown_errors_keep_their_first_line() {
        assert_eq!(
            explain(&generic("something odd\nwith detail")),
            "something odd"
        );
    }
}
