//! `[dnstap]`: where the stream goes and how its messages name labgate.

use std::path::PathBuf;
use std::sync::Arc;

use super::dns::report;
use super::{Ctx, Explain, single, values};
use crate::raw::RawFile;
use crate::settings::{DnstapDestination, DnstapSettings};
use crate::source::FileId;

pub(super) fn compile(cx: &mut Ctx<'_>, files: &[(FileId, RawFile)]) -> Option<DnstapSettings> {
    let (file, raw) = single(cx, files, "dnstap", |f| f.dnstap.as_ref())?;
    let destination = match (&raw.socket, &raw.address) {
        (Some(socket), None) => {
            let path = PathBuf::from(socket.get_ref());
            if !path.is_absolute() {
                cx.error(
                    file,
                    socket.span(),
                    "dnstap.socket",
                    format!("`{}` is not an absolute path", socket.get_ref()),
                )
                .expected("the collector's socket, like `/run/vector/dnstap.sock`");
                return None;
            }
            DnstapDestination::Unix(path)
        }
        (None, Some(address)) => {
            let addr = values::socket(address.get_ref(), 0).and_then(|a| {
                if a.port() == 0 {
                    Err((
                        format!("`{}` has no port", address.get_ref()),
                        "`IP:PORT`, e.g. `192.0.2.10:6000`",
                    ))
                } else {
                    Ok(a)
                }
            });
            DnstapDestination::Tcp(report(cx, file, address, "dnstap.address", addr)?)
        }
        (Some(_), Some(address)) => {
            cx.error(
                file,
                address.span(),
                "dnstap.address",
                "`[dnstap]` names both a `socket` and an `address`",
            )
            .hint("keep one: the collector listens on one of them");
            return None;
        }
        (None, None) => {
            let whole = files
                .iter()
                .find(|(id, _)| *id == file)
                .and_then(|(_, f)| f.dnstap.as_ref())
                .map(|d| d.span())
                .unwrap_or_default();
            cx.error(file, whole, "dnstap", "`[dnstap]` names no collector")
                .hint(
                    "add `socket = \"/run/vector/dnstap.sock\"` or `address = \"192.0.2.10:6000\"`",
                );
            return None;
        }
    };
    Some(DnstapSettings {
        destination,
        identity: raw
            .identity
            .as_ref()
            .map(|s| Arc::from(s.get_ref().as_str())),
        version: raw.version.as_ref().map_or_else(
            || Arc::from(concat!("labgate ", env!("CARGO_PKG_VERSION"))),
            |s| Arc::from(s.get_ref().as_str()),
        ),
    })
}
