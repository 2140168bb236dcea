//! Chains of filters, typed result keys and the two engines that drive a chain (push and pull).
//!
//! Contract: filters run in the order they were added. The bytes between two transforms form an
//! *edge*; an observer sits on the edge where it was added and sees exactly the bytes of that
//! edge, whole and in order. Results are addressed by the [`ResultKey`] returned when the
//! observer was added; keys are positions among the chain's observers, so a chain rebuilt from
//! the same specs (elsewhere) answers the same keys.

use std::io::Read;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::CHUNK_SIZE;
use super::filter::{CustomFilter, DynObserve, FilterFactory, FilterSpec, Observe, Transform};
use super::hash::{Sha1Digest, Sha1Observer, SizeObserver};
use crate::crypto::{Decryptor, Encryptor};
use crate::error::{Error, ErrorKind, Result};

/// Typed handle to one observer's result in [`FilterResults`].
pub struct ResultKey<T> {
    index: usize,
    marker: PhantomData<fn() -> T>,
}

impl<T> ResultKey<T> {
    fn new(index: usize) -> Self {
        ResultKey {
            index,
            marker: PhantomData,
        }
    }

    /// Position of the observer among the chain's observers.
    #[must_use]
    pub fn index(&self) -> usize {
        self.index
    }
}

impl<T> Clone for ResultKey<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ResultKey<T> {}

impl<T> std::fmt::Debug for ResultKey<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ResultKey({})", self.index)
    }
}

impl<T> PartialEq for ResultKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}

impl<T> Eq for ResultKey<T> {}

/// The results of a finished chain, one per observer. Serializable, so a remote can send them
/// back with the stream.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FilterResults {
    values: Vec<serde_json::Value>,
}

impl FilterResults {
    /// The result for `key`, as the observer's output type.
    pub fn get<T: DeserializeOwned>(&self, key: ResultKey<T>) -> Result<T> {
        let Some(value) = self.values.get(key.index) else {
            crate::bail!(
                Assert,
                "no filter result {} (chain has {} observers)",
                key.index,
                self.values.len()
            );
        };
        T::deserialize(value).map_err(|e| {
            crate::err!(
                Assert,
                "filter result {} has an unexpected type: {e}",
                key.index
            )
        })
    }

    /// The raw result of the observer at `index`.
    #[must_use]
    pub fn value(&self, index: usize) -> Option<&serde_json::Value> {
        self.values.get(index)
    }

    /// Number of results (= observers in the chain).
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when the chain had no observers.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

pub(crate) enum Stage {
    Observe(Box<dyn DynObserve>),
    Transform(Box<dyn Transform>),
}

/// An ordered list of filters, built from [`FilterSpec`]s, ready to run once through a
/// [`super::FilterRead`], a [`super::FilterWrite`] or [`super::copy`].
///
/// ```
/// use pgkeep_base::compress::CompressType;
/// use pgkeep_base::io::{copy, Chain, FilterSpec};
///
/// let mut chain = Chain::new();
/// let size = chain.size();
/// chain.transform(FilterSpec::compress(CompressType::Gz))?;
/// let stored = chain.sha1();
/// let mut out = Vec::new();
/// let results = copy(&mut &b"15\n"[..], chain, &mut out)?;
/// assert_eq!(results.get(size)?, 3);
/// assert_eq!(results.get(stored)?, pgkeep_base::io::sha1(&out));
/// # Ok::<(), pgkeep_base::Error>(())
/// ```
#[derive(Default)]
pub struct Chain {
    stages: Vec<Stage>,
    specs: Vec<FilterSpec>,
    observers: usize,
}

impl Chain {
    /// An empty chain (bytes pass unchanged).
    #[must_use]
    pub fn new() -> Chain {
        Chain::default()
    }

    /// Rebuild a chain from its specs, e.g. on a remote. Custom specs need a `factory`.
    pub fn from_specs(specs: &[FilterSpec], factory: Option<&dyn FilterFactory>) -> Result<Chain> {
        let mut chain = Chain::new();
        for spec in specs {
            match spec {
                FilterSpec::Size => {
                    chain.size();
                }
                FilterSpec::Sha1 => {
                    chain.sha1();
                }
                FilterSpec::Custom { name, params } => {
                    let built = match factory {
                        Some(factory) => factory.build(name, params)?,
                        None => None,
                    };
                    let stage = match built {
                        Some(CustomFilter::Observe(observer)) => {
                            chain.observers += 1;
                            Stage::Observe(observer)
                        }
                        Some(CustomFilter::Transform(transform)) => Stage::Transform(transform),
                        None => crate::bail!(Assert, "unknown filter '{name}'"),
                    };
                    chain.stages.push(stage);
                    chain.specs.push(spec.clone());
                }
                _ => {
                    chain.transform(spec.clone())?;
                }
            }
        }
        Ok(chain)
    }

    /// Add a built-in transform (compress, decompress, encrypt, decrypt). Compress and
    /// decompress of [`crate::compress::CompressType::None`] add nothing.
    pub fn transform(&mut self, spec: FilterSpec) -> Result<&mut Chain> {
        let transform: Box<dyn Transform> = match &spec {
            FilterSpec::Compress { ty, level } => match ty.compressor(*level)? {
                Some(transform) => transform,
                None => return Ok(self),
            },
            FilterSpec::Decompress { ty } => match ty.decompressor()? {
                Some(transform) => transform,
                None => return Ok(self),
            },
            FilterSpec::Encrypt { pass } => Box::new(Encryptor::new(pass.as_bytes())?),
            FilterSpec::Decrypt { pass } => Box::new(Decryptor::new(pass.as_bytes())),
            FilterSpec::Size | FilterSpec::Sha1 | FilterSpec::Custom { .. } => {
                crate::bail!(
                    Assert,
                    "filter '{}' is not a built-in transform",
                    spec.name()
                )
            }
        };
        self.stages.push(Stage::Transform(transform));
        self.specs.push(spec);
        Ok(self)
    }

    /// Add a byte counter here.
    pub fn size(&mut self) -> ResultKey<u64> {
        self.push_observer(FilterSpec::Size, Box::new(SizeObserver::new()))
    }

    /// Add a SHA-1 here.
    pub fn sha1(&mut self) -> ResultKey<Sha1Digest> {
        self.push_observer(FilterSpec::Sha1, Box::new(Sha1Observer::new()))
    }

    /// Add an observer defined elsewhere. `name` and `params` are what a [`FilterFactory`] needs
    /// to rebuild it from [`Chain::specs`].
    pub fn observe<O: Observe + 'static>(
        &mut self,
        name: &str,
        params: serde_json::Value,
        observer: O,
    ) -> ResultKey<O::Output> {
        let spec = FilterSpec::Custom {
            name: name.to_string(),
            params,
        };
        self.push_observer(spec, Box::new(observer))
    }

    /// Add a transform defined elsewhere, described by `name` and `params` as for
    /// [`Chain::observe`].
    pub fn transform_custom(
        &mut self,
        name: &str,
        params: serde_json::Value,
        transform: Box<dyn Transform>,
    ) -> &mut Chain {
        self.stages.push(Stage::Transform(transform));
        self.specs.push(FilterSpec::Custom {
            name: name.to_string(),
            params,
        });
        self
    }

    /// The specs this chain was built from, in order.
    #[must_use]
    pub fn specs(&self) -> &[FilterSpec] {
        &self.specs
    }

    /// Number of filters.
    #[must_use]
    pub fn len(&self) -> usize {
        self.stages.len()
    }

    /// True when bytes pass unchanged and unobserved.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    fn push_observer<T>(
        &mut self,
        spec: FilterSpec,
        observer: Box<dyn DynObserve>,
    ) -> ResultKey<T> {
        let key = ResultKey::new(self.observers);
        self.observers += 1;
        self.stages.push(Stage::Observe(observer));
        self.specs.push(spec);
        key
    }

    /// Split into observers per edge (edge 0 = input) and the transforms between edges.
    fn into_parts(self) -> (Vec<Vec<Observer>>, Vec<Box<dyn Transform>>, usize) {
        let mut edges = vec![Vec::new()];
        let mut transforms = Vec::new();
        let mut index = 0;
        for stage in self.stages {
            match stage {
                Stage::Observe(observer) => {
                    if let Some(edge) = edges.last_mut() {
                        edge.push(Observer { index, observer });
                    }
                    index += 1;
                }
                Stage::Transform(transform) => {
                    transforms.push(transform);
                    edges.push(Vec::new());
                }
            }
        }
        (edges, transforms, self.observers)
    }
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.specs).finish()
    }
}

struct Observer {
    index: usize,
    observer: Box<dyn DynObserve>,
}

fn observe(observers: &mut [Observer], data: &[u8]) {
    for observer in observers {
        observer.observer.update(data);
    }
}

fn collect(edges: Vec<Vec<Observer>>, count: usize) -> Result<FilterResults> {
    let mut values = vec![serde_json::Value::Null; count];
    for mut observer in edges.into_iter().flatten() {
        let value = observer.observer.finish_value()?;
        match values.get_mut(observer.index) {
            Some(slot) => *slot = value,
            None => crate::bail!(Assert, "filter result {} out of range", observer.index),
        }
    }
    Ok(FilterResults { values })
}

fn no_progress() -> Error {
    Error::new(ErrorKind::Assert, "filter made no progress")
}

// ---------------------------------------------------------------------------------------------
// Push engine: the caller hands in bytes; they flow down to a sink.

struct PushStage {
    transform: Box<dyn Transform>,
    out: Vec<u8>,
    observers: Vec<Observer>,
}

pub(crate) struct Push {
    head: Vec<Observer>,
    stages: Vec<PushStage>,
    count: usize,
}

pub(crate) type Sink<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

impl Push {
    pub(crate) fn new(chain: Chain) -> Push {
        let (mut edges, transforms, count) = chain.into_parts();
        let tails = edges.split_off(1);
        let head = edges.into_iter().flatten().collect();
        let stages = transforms
            .into_iter()
            .zip(tails)
            .map(|(transform, observers)| PushStage {
                transform,
                out: Vec::new(),
                observers,
            })
            .collect();
        Push {
            head,
            stages,
            count,
        }
    }

    pub(crate) fn write(&mut self, data: &[u8], sink: &mut Sink<'_>) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        observe(&mut self.head, data);
        push(&mut self.stages, data, sink)
    }

    pub(crate) fn finish(mut self, sink: &mut Sink<'_>) -> Result<FilterResults> {
        finish(&mut self.stages, sink)?;
        let mut edges = vec![self.head];
        edges.extend(self.stages.into_iter().map(|stage| stage.observers));
        collect(edges, self.count)
    }
}

fn push(stages: &mut [PushStage], data: &[u8], sink: &mut Sink<'_>) -> Result<()> {
    let Some((stage, rest)) = stages.split_first_mut() else {
        return sink(data);
    };
    let mut pos = 0;
    while let Some(input) = data.get(pos..).filter(|input| !input.is_empty()) {
        stage.out.clear();
        let used = stage.transform.process(input, &mut stage.out)?;
        if used > input.len() || (used == 0 && stage.out.is_empty()) {
            return Err(no_progress());
        }
        pos += used;
        if !stage.out.is_empty() {
            observe(&mut stage.observers, &stage.out);
            push(rest, &stage.out, sink)?;
        }
    }
    Ok(())
}

fn finish(stages: &mut [PushStage], sink: &mut Sink<'_>) -> Result<()> {
    let Some((stage, rest)) = stages.split_first_mut() else {
        return Ok(());
    };
    loop {
        stage.out.clear();
        let done = stage.transform.finish(&mut stage.out)?;
        if !stage.out.is_empty() {
            observe(&mut stage.observers, &stage.out);
            push(rest, &stage.out, sink)?;
        } else if !done {
            return Err(no_progress());
        }
        if done {
            break;
        }
    }
    stage.out = Vec::new();
    finish(rest, sink)
}

// ---------------------------------------------------------------------------------------------
// Pull engine: the caller asks for bytes; each stage pulls from the one before it.

struct Edge {
    data: Vec<u8>,
    /// Bytes of `data` that are valid (the source edge keeps its buffer allocated and zeroed once).
    len: usize,
    pos: usize,
    ended: bool,
    observers: Vec<Observer>,
}

impl Edge {
    fn unread(&self) -> &[u8] {
        self.data.get(self.pos..self.len).unwrap_or_default()
    }
}

struct PullStage {
    transform: Box<dyn Transform>,
    finished: bool,
}

pub(crate) struct Pull {
    edges: Vec<Edge>,
    stages: Vec<PullStage>,
    count: usize,
}

impl Pull {
    pub(crate) fn new(chain: Chain) -> Pull {
        let (edges, transforms, count) = chain.into_parts();
        Pull {
            edges: edges
                .into_iter()
                .map(|observers| Edge {
                    data: Vec::new(),
                    len: 0,
                    pos: 0,
                    ended: false,
                    observers,
                })
                .collect(),
            stages: transforms
                .into_iter()
                .map(|transform| PullStage {
                    transform,
                    finished: false,
                })
                .collect(),
            count,
        }
    }

    /// True when the chain has no transform, so the source can be read straight into the
    /// caller's buffer.
    pub(crate) fn passthrough(&self) -> bool {
        self.stages.is_empty()
    }

    /// Bytes of the output not yet consumed; empty at the end of the stream.
    pub(crate) fn fill(&mut self, reader: &mut dyn Read) -> Result<&[u8]> {
        fill(&mut self.edges, &mut self.stages, reader)?;
        Ok(self.edges.last().map(Edge::unread).unwrap_or_default())
    }

    pub(crate) fn consume(&mut self, amount: usize) {
        if let Some(edge) = self.edges.last_mut() {
            edge.pos = (edge.pos + amount).min(edge.len);
        }
    }

    /// Read from the source straight into `buf` (only when [`Pull::passthrough`] and nothing
    /// is buffered).
    pub(crate) fn read_direct(&mut self, reader: &mut dyn Read, buf: &mut [u8]) -> Result<usize> {
        let Some(edge) = self.edges.first_mut() else {
            return Ok(0);
        };
        if edge.ended {
            return Ok(0);
        }
        let read = read_source(reader, buf)?;
        match buf.get(..read) {
            Some(data) if !data.is_empty() => observe(&mut edge.observers, data),
            _ => edge.ended = true,
        }
        Ok(read)
    }

    pub(crate) fn buffered(&self) -> bool {
        self.edges.last().is_some_and(|edge| edge.pos < edge.len)
    }

    pub(crate) fn finish(mut self, reader: &mut dyn Read) -> Result<FilterResults> {
        loop {
            let amount = self.fill(reader)?.len();
            if amount == 0 {
                break;
            }
            self.consume(amount);
        }
        collect(
            self.edges.into_iter().map(|edge| edge.observers).collect(),
            self.count,
        )
    }
}

pub(crate) fn read_source<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> Result<usize> {
    loop {
        match reader.read(buf) {
            Ok(read) => return Ok(read.min(buf.len())),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(Error::from_io_error(
                    &e,
                    ErrorKind::FileRead,
                    "unable to read",
                ));
            }
        }
    }
}

/// Make the last edge of `edges` hold unread bytes, or mark it ended.
fn fill(edges: &mut [Edge], stages: &mut [PullStage], reader: &mut dyn Read) -> Result<()> {
    let Some((edge, upstream)) = edges.split_last_mut() else {
        return Ok(());
    };
    if edge.pos < edge.len || edge.ended {
        return Ok(());
    }
    edge.pos = 0;
    edge.len = 0;
    let Some((stage, upstream_stages)) = stages.split_last_mut() else {
        // the source edge
        if edge.data.len() != CHUNK_SIZE {
            edge.data = vec![0; CHUNK_SIZE];
        }
        edge.len = read_source(reader, &mut edge.data)?;
        match edge.data.get(..edge.len) {
            Some(data) if !data.is_empty() => observe(&mut edge.observers, data),
            _ => edge.ended = true,
        }
        return Ok(());
    };
    edge.data.clear();
    loop {
        fill(upstream, upstream_stages, reader)?;
        let Some(input) = upstream.last_mut() else {
            return Err(no_progress());
        };
        let unread = input.unread();
        if !unread.is_empty() {
            let used = stage.transform.process(unread, &mut edge.data)?;
            if used > unread.len() || (used == 0 && edge.data.is_empty()) {
                return Err(no_progress());
            }
            input.pos += used;
        } else if stage.finished {
            edge.ended = true;
            return Ok(());
        } else if stage.transform.finish(&mut edge.data)? {
            stage.finished = true;
        } else if edge.data.is_empty() {
            return Err(no_progress());
        }
        if !edge.data.is_empty() {
            edge.len = edge.data.len();
            observe(&mut edge.observers, &edge.data);
            return Ok(());
        }
    }
}
