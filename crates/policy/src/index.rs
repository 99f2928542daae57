//! The route index: a segment trie built once when the policy is loaded, so that finding the
//! route for a request costs a walk over the request's segments, not a scan over every route.
//!
//! Each node has its literal children (sorted, binary-searched), at most one parameter child, and
//! two sets of endpoints: routes whose template ends exactly at this node, and routes whose
//! template ends here in `/*`. An endpoint set maps explicit methods to routes and has at most one
//! any-method (`*`) route. The search is depth-first in precedence order (literal child, then
//! parameter child, then this node's wildcard routes), so the first route found is the most
//! specific one; every node is visited at most once, so the worst case is bounded by the size of
//! the index, never exponential.

use crate::path;
use crate::policy::{Methods, Route};
use crate::template::Segment;

/// The trie over every route of a policy; holds route numbers (positions in the policy's list).
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    root: Node,
}

#[derive(Clone, Debug, Default)]
struct Node {
    literals: Vec<(Box<str>, Node)>,
    param: Option<Box<Node>>,
    exact: Endpoints,
    wildcard: Endpoints,
}

#[derive(Clone, Debug, Default)]
struct Endpoints {
    methods: Vec<(Box<str>, usize)>,
    any: Option<usize>,
}

impl Endpoints {
    /// An explicit method beats `*` on the same template.
    fn get(&self, method: &str) -> Option<usize> {
        self.methods.iter().find(|(m, _)| **m == *method).map(|(_, id)| *id).or(self.any)
    }
}

impl Index {
    /// Adds route number `id`. When another route already takes the same template shape (the same
    /// literals, parameters in the same places, the same wildcard) for one of its methods, that
    /// route's number and the method (`*` for any) are returned, and this route is not added for
    /// that method.
    pub(crate) fn insert(&mut self, id: usize, route: &Route) -> Option<(usize, String)> {
        let mut node = &mut self.root;
        for segment in route.template().segments() {
            node = match segment {
                Segment::Literal(text) => {
                    let at = match node.literals.binary_search_by(|(l, _)| (**l).cmp(text.as_str())) {
                        Ok(at) => at,
                        Err(at) => {
                            node.literals.insert(at, (text.as_str().into(), Node::default()));
                            at
                        }
                    };
                    &mut node.literals[at].1
                }
                Segment::Param(_) => node.param.get_or_insert_with(Box::default),
            };
        }
        let endpoints = if route.template().has_wildcard() { &mut node.wildcard } else { &mut node.exact };
        match route.methods() {
            Methods::Any => match endpoints.any {
                Some(other) => Some((other, "*".to_owned())),
                None => {
                    endpoints.any = Some(id);
                    None
                }
            },
            Methods::Only(methods) => {
                let mut conflict = None;
                for method in methods {
                    match endpoints.methods.iter().find(|(m, _)| **m == **method) {
                        Some((_, other)) => conflict = conflict.or(Some((*other, method.clone()))),
                        None => endpoints.methods.push((method.as_str().into(), id)),
                    }
                }
                conflict
            }
        }
    }

    /// The most specific route for `method` on a path already normalized by `path::normalize`.
    pub(crate) fn find(&self, method: &str, normalized: &str) -> Option<usize> {
        self.root.find(method, normalized)
    }
}

impl Node {
    /// The literal child for `segment`: a linear scan over a few children (comparing lengths
    /// first), a binary search over many.
    fn literal(&self, segment: &str) -> Option<&Node> {
        if self.literals.len() <= 8 {
            return self.literals.iter().find(|(l, _)| l.len() == segment.len() && **l == *segment).map(|(_, n)| n);
        }
        let at = self.literals.binary_search_by(|(l, _)| (**l).cmp(segment)).ok()?;
        Some(&self.literals[at].1)
    }

    fn find(&self, method: &str, rest: &str) -> Option<usize> {
        if rest.is_empty() {
            return self.exact.get(method).or_else(|| self.wildcard.get(method));
        }
        let (segment, tail) = path::first_segment(rest);
        if let Some(child) = self.literal(segment)
            && let Some(id) = child.find(method, tail)
        {
            return Some(id);
        }
        if let Some(param) = &self.param
            && let Some(id) = param.find(method, tail)
        {
            return Some(id);
        }
        self.wildcard.get(method)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::path;
    use crate::policy::Policy;

    /// The precedence rules written as plainly as possible: of all routes that match, the one with
    /// the greatest rank, then an explicit method over `*`, then the earliest.
    fn reference<'p>(policy: &'p Policy, method: &str, request: &str) -> Option<&'p crate::Route> {
        let normalized = path::normalize(request)?;
        policy
            .routes()
            .iter()
            .enumerate()
            .filter(|(_, r)| r.methods().contains(method) && r.template().matches(request))
            .max_by(|(i, a), (j, b)| {
                let explicit = |r: &crate::Route| !matches!(r.methods(), crate::Methods::Any);
                a.template()
                    .rank(normalized)
                    .cmp(&b.template().rank(normalized))
                    .then(explicit(a).cmp(&explicit(b)))
                    .then(j.cmp(i))
            })
            .map(|(_, r)| r)
    }

    fn template() -> impl Strategy<Value = String> {
        let segment = prop::sample::select(vec!["a", "b", "{p}", "{q}"]);
        (prop::collection::vec(segment, 0..4), any::<bool>()).prop_map(|(segments, wildcard)| {
            let mut names = 0;
            let mut text: String = segments
                .iter()
                .map(|s| {
                    // Parameter names must differ within a template.
                    if s.starts_with('{') {
                        names += 1;
                        format!("/{{p{names}}}")
                    } else {
                        format!("/{s}")
                    }
                })
                .collect();
            if wildcard {
                text.push_str("/*");
            }
            if text.is_empty() {
                text.push('/');
            }
            text
        })
    }

    /// A policy of the generated routes that do not collide with an earlier one.
    fn policy(routes: &[(&str, String)]) -> Policy {
        let mut text = String::new();
        for (method, template) in routes {
            let route =
                format!("[[route]]\nmethod = {method:?}\npath = {template:?}\nresource = \"r\"\naction = \"read\"\n");
            if Policy::parse(&format!("{text}{route}"), "p").is_ok() {
                text.push_str(&route);
            }
        }
        Policy::parse(&text, "p").unwrap()
    }

    proptest! {
        #[test]
        fn index_agrees_with_the_reference(
            routes in prop::collection::vec((prop::sample::select(vec!["GET", "POST", "*"]), template()), 0..14),
            requests in prop::collection::vec(
                (
                    prop::sample::select(vec!["GET", "POST", "PUT"]),
                    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..5),
                    any::<bool>(),
                ),
                1..20,
            ),
        ) {
            let policy = policy(&routes);
            for (method, segments, trailing_slash) in requests {
                let mut request: String = segments.iter().map(|s| format!("/{s}")).collect();
                if trailing_slash || request.is_empty() {
                    request.push('/');
                }
                let got = policy.matches(method, &request).map(|m| m.route().line());
                let want = reference(&policy, method, &request).map(crate::Route::line);
                prop_assert_eq!(got, want, "{} {} against\n{:#?}", method, request, policy.routes());
            }
        }
    }
}
