//! A process run in a running container, its stdio held by this process
//! (`docker exec -i`): how the owner carries the worker feed into containers
//! it shares no files with.

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::StreamExt;

use super::client::Engine;
use super::convert::convert_output;
use super::model::{InputWriter, OutputStream};
use crate::error::{Error, Result};

impl Engine {
    /// Run `cmd` in running container `id` as its configured user, with its
    /// stdin, stdout and stderr attached here; the process ends when its
    /// stdin closes (by its own choice) or when the container does.
    pub async fn exec(&self, id: &str, cmd: &[&str]) -> Result<(OutputStream, InputWriter)> {
        let options = CreateExecOptions {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            cmd: Some(cmd.iter().map(|&s| s.to_owned()).collect()),
            ..Default::default()
        };
        let created = self
            .docker
            .create_exec(id, options)
            .await
            .map_err(|e| self.err("create an exec in container", e))?;
        let started = self
            .docker
            .start_exec(&created.id, Some(StartExecOptions::default()))
            .await
            .map_err(|e| self.err("start an exec in container", e))?;
        let StartExecResults::Attached { output, input } = started else {
            return Err(Error::Internal(
                "the Engine detached an exec that was asked to attach".to_owned(),
            ));
        };
        let host = self.host.clone();
        let output = output.filter_map(move |item| {
            let host = host.clone();
            async move { convert_output(item, &host) }
        });
        Ok((Box::pin(output), input))
    }
}
