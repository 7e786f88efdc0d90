//! Recursive-descent parser of the condition language that type-checks as it
//! builds the AST, so that every error carries the position it was found at.

use chrono::FixedOffset;

use super::lexer::{tokenize, Pos, Spanned, Token};
use super::{
    Builtin, CmpOp, Declarations, Expr, Literal, ParseError, StrTest, TimePart, Ty, Var,
    MAX_NESTING,
};
use crate::domain::engine::glob::Glob;
use crate::domain::engine::value::{is_attribute_key, Source, ATTRIBUTE_KEY_RULE};

pub fn parse(text: &str, declarations: &Declarations) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let end = tokens
        .last()
        .map_or(Pos { line: 1, column: 1 }, |last| last.pos);
    let mut parser = Parser {
        tokens,
        next: 0,
        depth: 0,
        declarations,
        end,
    };
    if parser.tokens.is_empty() {
        return Err(ParseError::new(parser.end, "the condition is empty"));
    }
    let (root, ty) = parser.or()?;
    if let Some(extra) = parser.peek() {
        return Err(ParseError::new(
            extra.pos,
            format!(
                "unexpected {} after a complete condition",
                extra.token.describe()
            ),
        ));
    }
    if !matches!(ty, Ty::Bool | Ty::Any) {
        return Err(ParseError::new(
            Pos { line: 1, column: 1 },
            format!("a condition must be true or false, this is {}", ty.name()),
        ));
    }
    Ok(root)
}

struct Parser<'a> {
    tokens: Vec<Spanned>,
    next: usize,
    depth: usize,
    declarations: &'a Declarations,
    end: Pos,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Spanned> {
        self.tokens.get(self.next)
    }

    fn peek_token(&self) -> Option<&Token> {
        self.peek().map(|spanned| &spanned.token)
    }

    fn pos(&self) -> Pos {
        self.peek().map_or(self.end, |spanned| spanned.pos)
    }

    fn bump(&mut self) -> Option<Spanned> {
        let token = self.tokens.get(self.next).cloned();
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    fn expect(&mut self, expected: &Token, context: &str) -> Result<(), ParseError> {
        match self.bump() {
            Some(spanned) if spanned.token == *expected => Ok(()),
            Some(spanned) => Err(ParseError::new(
                spanned.pos,
                format!(
                    "expected {} {context}, found {}",
                    expected.describe(),
                    spanned.token.describe()
                ),
            )),
            None => Err(ParseError::new(
                self.end,
                format!("expected {} {context}, found the end", expected.describe()),
            )),
        }
    }

    fn nest(&mut self, pos: Pos) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(ParseError::new(
                pos,
                format!("nested deeper than {MAX_NESTING} levels"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<(Expr, Ty), ParseError> {
        self.chain(Token::Or, Self::and, Expr::Any)
    }

    fn and(&mut self) -> Result<(Expr, Ty), ParseError> {
        self.chain(Token::And, Self::unary, Expr::All)
    }

    /// `item (op item)*` as one n-ary node, so that long chains do not
    /// deepen the tree.
    fn chain(
        &mut self,
        op: Token,
        item: fn(&mut Self) -> Result<(Expr, Ty), ParseError>,
        build: fn(Vec<Expr>) -> Expr,
    ) -> Result<(Expr, Ty), ParseError> {
        let first_pos = self.pos();
        let (first, first_ty) = item(self)?;
        if self.peek_token() != Some(&op) {
            return Ok((first, first_ty));
        }
        require_bool(first_ty, first_pos, &op)?;
        let mut items = vec![first];
        while self.peek_token() == Some(&op) {
            self.bump();
            let pos = self.pos();
            let (next, ty) = item(self)?;
            require_bool(ty, pos, &op)?;
            items.push(next);
        }
        Ok((build(items), Ty::Bool))
    }

    fn unary(&mut self) -> Result<(Expr, Ty), ParseError> {
        if self.peek_token() != Some(&Token::Not) {
            return self.compare();
        }
        let pos = self.pos();
        self.bump();
        self.nest(pos)?;
        let operand_pos = self.pos();
        let (inner, ty) = self.unary()?;
        self.depth -= 1;
        require_bool(ty, operand_pos, &Token::Not)?;
        Ok((Expr::Not(Box::new(inner)), Ty::Bool))
    }

    fn compare(&mut self) -> Result<(Expr, Ty), ParseError> {
        let (left, left_ty) = self.operand()?;
        let Some(op) = self.peek().and_then(|spanned| comparison(&spanned.token)) else {
            return Ok((left, left_ty));
        };
        let op_pos = self.pos();
        self.bump();
        let (right, right_ty) = self.operand()?;
        let expr = match op {
            Comparison::In => {
                check_in(left_ty, right_ty, op_pos)?;
                Expr::In(Box::new(left), Box::new(right))
            }
            Comparison::Cmp(cmp) => {
                check_compare(cmp, left_ty, right_ty, op_pos)?;
                Expr::Compare(cmp, Box::new(left), Box::new(right))
            }
        };
        if let Some(next) = self
            .peek()
            .filter(|spanned| comparison(&spanned.token).is_some())
        {
            return Err(ParseError::new(
                next.pos,
                "comparisons do not chain: join them with `&&` or use parentheses",
            ));
        }
        Ok((expr, Ty::Bool))
    }

    fn operand(&mut self) -> Result<(Expr, Ty), ParseError> {
        let pos = self.pos();
        let Some(spanned) = self.bump() else {
            return Err(ParseError::new(self.end, "expected a value, found the end"));
        };
        match spanned.token {
            Token::Str(text) => Ok((Expr::Literal(Literal::Str(text.into())), Ty::Str)),
            Token::Int(number) => Ok((Expr::Literal(Literal::Int(number)), Ty::Int)),
            Token::Double(number) => Ok((Expr::Literal(Literal::Double(number)), Ty::Double)),
            Token::LBracket => self.list(pos),
            Token::LParen => {
                self.nest(pos)?;
                let inner = self.or()?;
                self.expect(&Token::RParen, "to close `(`")?;
                self.depth -= 1;
                Ok(inner)
            }
            Token::Ident(name) => match name.as_str() {
                "true" => Ok((Expr::Literal(Literal::Bool(true)), Ty::Bool)),
                "false" => Ok((Expr::Literal(Literal::Bool(false)), Ty::Bool)),
                _ if self.peek_token() == Some(&Token::LParen) => self.call(&name, pos),
                _ => {
                    let (var, ty) = self.variable(&name, pos)?;
                    Ok((Expr::Var(var), ty))
                }
            },
            other => Err(ParseError::new(
                pos,
                format!("expected a value, found {}", other.describe()),
            )),
        }
    }

    fn list(&mut self, pos: Pos) -> Result<(Expr, Ty), ParseError> {
        let mut items = Vec::new();
        let mut ty = None;
        loop {
            let item_pos = self.pos();
            let (item, item_ty) = match self.bump().map(|spanned| spanned.token) {
                Some(Token::RBracket) if items.is_empty() => {
                    return Err(ParseError::new(pos, "a list needs at least one value"))
                }
                Some(Token::Str(text)) => (Literal::Str(text.into()), Ty::StrLiterals),
                Some(Token::Int(number)) => (Literal::Int(number), Ty::NumLiterals),
                Some(Token::Double(number)) => (Literal::Double(number), Ty::NumLiterals),
                _ => {
                    return Err(ParseError::new(
                        item_pos,
                        "a list holds string or number literals only",
                    ))
                }
            };
            if ty.is_some_and(|known| known != item_ty) {
                return Err(ParseError::new(
                    item_pos,
                    "a list mixes strings and numbers",
                ));
            }
            ty = Some(item_ty);
            items.push(item);
            match self.bump().map(|spanned| spanned.token) {
                Some(Token::Comma) => continue,
                Some(Token::RBracket) => break,
                _ => {
                    return Err(ParseError::new(
                        item_pos,
                        "expected `,` or `]` after a list value",
                    ))
                }
            }
        }
        Ok((Expr::List(items), ty.unwrap_or(Ty::StrLiterals)))
    }

    fn variable(&mut self, name: &str, pos: Pos) -> Result<(Var, Ty), ParseError> {
        match name {
            "audience" => return Ok((Var::Builtin(Builtin::Audience), Ty::Str)),
            "action" => return Ok((Var::Builtin(Builtin::Action), Ty::Str)),
            _ => {}
        }
        let Some(source) = Source::from_prefix(name) else {
            return Err(ParseError::new(
                pos,
                format!(
                    "unknown name `{name}`: variables are agent.<key>, person.<key>, resource.<key>, context.<key>, audience or action"
                ),
            ));
        };
        let (key, key_pos) = self.attribute_key(name)?;
        if let Some(builtin) = Builtin::lookup(source, &key) {
            return Ok((Var::Builtin(builtin), builtin.ty()));
        }
        let declared = self.declarations.get(source, &key);
        if declared.is_none() {
            // Keys are case-sensitive: a key declared in another case is
            // almost certainly what was meant.
            if let Some(meant) = self.declarations.key_like(source, &key) {
                return Err(ParseError::new(
                    key_pos,
                    format!(
                        "`{name}` has no attribute `{key}` declared; `{meant}` is (keys are \
                         case-sensitive)"
                    ),
                ));
            }
        }
        let ty = declared.map_or(Ty::Any, Ty::of);
        Ok((
            Var::Attr {
                source,
                key: key.into(),
            },
            ty,
        ))
    }

    /// The key after `<source>`: `.key` for a plain key of any case,
    /// `["any key"]` for the rest; and where the key is.
    fn attribute_key(&mut self, name: &str) -> Result<(String, Pos), ParseError> {
        let pos = self.pos();
        let expected = || {
            ParseError::new(
                pos,
                format!(
                    "expected `.key` or `[\"key\"]` after `{name}` (a plain key is \
                     [A-Za-z_][A-Za-z0-9_]*; quote any other)"
                ),
            )
        };
        let opening = self.bump().map(|spanned| spanned.token);
        let key_pos = self.pos();
        let key = match opening {
            Some(Token::Dot) => match self.bump().map(|spanned| spanned.token) {
                Some(Token::Ident(key)) => key,
                _ => return Err(expected()),
            },
            Some(Token::LBracket) => {
                let Some(Token::Str(key)) = self.bump().map(|spanned| spanned.token) else {
                    return Err(expected());
                };
                self.expect(&Token::RBracket, &format!("after `{name}[\"{key}\"`"))?;
                key
            }
            _ => return Err(expected()),
        };
        if !is_attribute_key(&key) {
            return Err(ParseError::new(
                key_pos,
                format!("`{name}`: {ATTRIBUTE_KEY_RULE}"),
            ));
        }
        Ok((key, key_pos))
    }

    fn call(&mut self, name: &str, pos: Pos) -> Result<(Expr, Ty), ParseError> {
        self.nest(pos)?;
        self.expect(&Token::LParen, "")?;
        let mut args = Vec::new();
        if self.peek_token() == Some(&Token::RParen) {
            self.bump();
        } else {
            loop {
                let arg_pos = self.pos();
                let (arg, ty) = self.or()?;
                args.push((arg, ty, arg_pos));
                match self.bump() {
                    Some(Spanned {
                        token: Token::Comma,
                        ..
                    }) => continue,
                    Some(Spanned {
                        token: Token::RParen,
                        ..
                    }) => break,
                    Some(other) => {
                        return Err(ParseError::new(
                            other.pos,
                            format!(
                                "expected `,` or `)` in the arguments of `{name}`, found {}",
                                other.token.describe()
                            ),
                        ))
                    }
                    None => {
                        return Err(ParseError::new(
                            self.end,
                            format!("`{name}(` is not closed"),
                        ))
                    }
                }
            }
        }
        self.depth -= 1;
        build_call(name, args, pos)
    }
}

enum Comparison {
    Cmp(CmpOp),
    In,
}

fn comparison(token: &Token) -> Option<Comparison> {
    match token {
        Token::Eq => Some(Comparison::Cmp(CmpOp::Eq)),
        Token::Ne => Some(Comparison::Cmp(CmpOp::Ne)),
        Token::Lt => Some(Comparison::Cmp(CmpOp::Lt)),
        Token::Le => Some(Comparison::Cmp(CmpOp::Le)),
        Token::Gt => Some(Comparison::Cmp(CmpOp::Gt)),
        Token::Ge => Some(Comparison::Cmp(CmpOp::Ge)),
        Token::Ident(word) if word == "in" => Some(Comparison::In),
        _ => None,
    }
}

fn require_bool(ty: Ty, pos: Pos, op: &Token) -> Result<(), ParseError> {
    if matches!(ty, Ty::Bool | Ty::Any) {
        return Ok(());
    }
    Err(ParseError::new(
        pos,
        format!(
            "{} needs true or false, this is {}",
            op.describe(),
            ty.name()
        ),
    ))
}

fn check_compare(op: CmpOp, left: Ty, right: Ty, pos: Pos) -> Result<(), ParseError> {
    let symbol = op.symbol();
    for ty in [left, right] {
        match ty {
            Ty::Time => {
                return Err(ParseError::new(
                    pos,
                    format!("`{symbol}` cannot compare a time: use hour(), minute() or weekday()"),
                ))
            }
            Ty::List | Ty::StrLiterals | Ty::NumLiterals => {
                return Err(ParseError::new(
                    pos,
                    format!("`{symbol}` cannot compare {}: use `in`", ty.name()),
                ))
            }
            _ => {}
        }
    }
    let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
    if ordering {
        if let Some(bad) = [left, right].into_iter().find(|ty| !ty.is_number()) {
            return Err(ParseError::new(
                pos,
                format!("`{symbol}` compares numbers, this is {}", bad.name()),
            ));
        }
        return Ok(());
    }
    let compatible = left == Ty::Any
        || right == Ty::Any
        || left == right
        || (left.is_number() && right.is_number());
    if !compatible {
        return Err(ParseError::new(
            pos,
            format!("`{symbol}` compares {} with {}", left.name(), right.name()),
        ));
    }
    Ok(())
}

fn check_in(item: Ty, set: Ty, pos: Pos) -> Result<(), ParseError> {
    let item_ok = match set {
        Ty::StrLiterals | Ty::List | Ty::Any => matches!(item, Ty::Str | Ty::Any),
        Ty::NumLiterals => matches!(item, Ty::Int | Ty::Double | Ty::Any),
        _ => {
            return Err(ParseError::new(
                pos,
                format!(
                    "the right side of `in` must be a list, this is {}",
                    set.name()
                ),
            ))
        }
    };
    if !item_ok {
        return Err(ParseError::new(
            pos,
            format!("`in` looks for {} in {}", item.name(), set.name()),
        ));
    }
    Ok(())
}

fn build_call(name: &str, args: Vec<(Expr, Ty, Pos)>, pos: Pos) -> Result<(Expr, Ty), ParseError> {
    let count = args.len();
    let arity = |expected: std::ops::RangeInclusive<usize>| -> Result<(), ParseError> {
        if expected.contains(&count) {
            return Ok(());
        }
        let wanted = if expected.start() == expected.end() {
            format!("{}", expected.start())
        } else {
            format!("{} or {}", expected.start(), expected.end())
        };
        Err(ParseError::new(
            pos,
            format!("`{name}` takes {wanted} argument(s), got {count}"),
        ))
    };
    let mut args = args.into_iter();
    let mut next_arg = || {
        args.next()
            .ok_or_else(|| ParseError::new(pos, "missing argument"))
    };
    match name {
        "hour" | "minute" | "weekday" => {
            arity(1..=2)?;
            let part = match name {
                "hour" => TimePart::Hour,
                "minute" => TimePart::Minute,
                _ => TimePart::Weekday,
            };
            let (time, ty, time_pos) = next_arg()?;
            if ty != Ty::Time {
                return Err(ParseError::new(
                    time_pos,
                    format!("`{name}` takes a time (context.time), this is {}", ty.name()),
                ));
            }
            let offset = match next_arg() {
                Ok((Expr::Literal(Literal::Str(text)), _, offset_pos)) => utc_offset(&text)
                    .ok_or_else(|| ParseError::new(offset_pos, format!("`{text}` is not a UTC offset like \"+02:00\"")))?,
                Ok((_, _, offset_pos)) => {
                    return Err(ParseError::new(offset_pos, "the UTC offset must be a string literal like \"-05:00\""))
                }
                Err(_) => FixedOffset::east_opt(0).ok_or_else(|| ParseError::new(pos, "bad offset"))?,
            };
            Ok((Expr::TimePart(part, Box::new(time), offset), Ty::Int))
        }
        "has" => {
            arity(1..=1)?;
            match next_arg()? {
                (Expr::Var(var), _, _) => Ok((Expr::Has(var), Ty::Bool)),
                (_, _, arg_pos) => Err(ParseError::new(arg_pos, "`has` takes a variable, e.g. has(agent.project)")),
            }
        }
        "starts_with" | "ends_with" | "contains" => {
            arity(2..=2)?;
            let test = match name {
                "starts_with" => StrTest::StartsWith,
                "ends_with" => StrTest::EndsWith,
                _ => StrTest::Contains,
            };
            let (value, value_ty, value_pos) = next_arg()?;
            let (needle, needle_ty, needle_pos) = next_arg()?;
            for (ty, at) in [(value_ty, value_pos), (needle_ty, needle_pos)] {
                if !matches!(ty, Ty::Str | Ty::Any) {
                    return Err(ParseError::new(at, format!("`{name}` takes strings, this is {}", ty.name())));
                }
            }
            Ok((Expr::StrTest(test, Box::new(value), Box::new(needle)), Ty::Bool))
        }
        "glob" => {
            arity(2..=2)?;
            let (value, value_ty, value_pos) = next_arg()?;
            if !matches!(value_ty, Ty::Str | Ty::Any) {
                return Err(ParseError::new(value_pos, format!("`glob` matches a string, this is {}", value_ty.name())));
            }
            match next_arg()? {
                (Expr::Literal(Literal::Str(pattern)), _, _) => {
                    Ok((Expr::Glob(Box::new(value), Glob::new(&pattern)), Ty::Bool))
                }
                (_, _, pattern_pos) => Err(ParseError::new(pattern_pos, "the `glob` pattern must be a string literal")),
            }
        }
        _ => Err(ParseError::new(
            pos,
            format!("unknown function `{name}` (hour, minute, weekday, has, starts_with, ends_with, contains, glob)"),
        )),
    }
}

/// `Z`, `UTC`, `+HH:MM` or `-HH:MM`.
fn utc_offset(text: &str) -> Option<FixedOffset> {
    if text == "Z" || text == "UTC" {
        return FixedOffset::east_opt(0);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if hours > 14 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::engine::value::AttrType;

    fn declarations() -> Declarations {
        let mut declarations = Declarations::default();
        declarations.insert(Source::Agent, "trust_tier", AttrType::Int);
        declarations.insert(Source::Resource, "project", AttrType::String);
        declarations.insert(Source::Person, "groups", AttrType::StringList);
        declarations
    }

    fn error(text: &str) -> ParseError {
        parse(text, &declarations()).unwrap_err()
    }

    #[test]
    fn parses_the_issue_examples() {
        let declarations = declarations();
        for text in [
            "agent.trust_tier < 2 && resource.project == \"x\"",
            "hour(context.time) < 9 || hour(context.time) >= 18 || weekday(context.time) in [6, 7]",
            "context.delegation_depth <= 2",
            "!(\"admins\" in person.groups) && has(person.subject)",
            "glob(resource.id, 'mcp:*/delete_*') && starts_with(audience, \"github\")",
            "hour(context.time, \"+05:30\") >= 9",
            "agent.undeclared == 3 || agent.other",
        ] {
            assert!(
                parse(text, &declarations).is_ok(),
                "{text}: {:?}",
                parse(text, &declarations)
            );
        }
    }

    #[test]
    fn keys_are_plain_in_any_case_or_quoted() {
        let parsed = parse(
            "resource.ownerID == person.userID && resource[\"x-team\"] == 'payments' \
             && context['user id'] != \"\"",
            &declarations(),
        )
        .unwrap();
        let Expr::All(items) = parsed else {
            panic!("expected All")
        };
        assert_eq!(items.len(), 3);
        let keys = format!("{items:?}");
        for key in ["ownerID", "userID", "x-team", "user id"] {
            assert!(keys.contains(&format!("{key:?}")), "{key} in {keys}");
        }
        // Variables read back as a condition writes them.
        let quoted = Var::Attr {
            source: Source::Resource,
            key: "x-\"team\"".into(),
        };
        assert_eq!(quoted.describe(), r#"resource["x-\"team\""]"#);
        let plain = Var::Attr {
            source: Source::Resource,
            key: "ownerID".into(),
        };
        assert_eq!(plain.describe(), "resource.ownerID");
        // A quoted key that is built in is the built-in.
        assert!(matches!(
            parse("resource[\"id\"] == 'x'", &declarations()).unwrap(),
            Expr::Compare(_, left, _) if matches!(*left, Expr::Var(Var::Builtin(_)))
        ));
        for (text, says) in [
            ("resource[x] == 1", "expected `.key` or `[\"key\"]`"),
            ("resource[\"x\" == 1", "expected `]`"),
            ("resource.\"x\" == 1", "expected `.key`"),
            ("resource[\"\"] == 1", "1-128 characters"),
        ] {
            let err = error(text);
            assert!(err.message.contains(says), "{text}: {}", err.message);
        }
    }

    #[test]
    fn a_declared_key_in_another_case_is_a_typo() {
        let err = error("resource.Project == 'x'");
        assert!(
            err.message
                .contains("`project` is (keys are case-sensitive)"),
            "{}",
            err.message
        );
        assert_eq!(
            err.pos,
            Pos {
                line: 1,
                column: 10
            }
        );
        assert!(parse("resource.Other == 'x'", &declarations()).is_ok());
    }

    #[test]
    fn and_or_chains_are_flat() {
        let expr = parse(
            "a.x || agent.a && agent.b && agent.c || agent.d",
            &declarations(),
        );
        assert!(expr.is_err(), "`a.x` is not a source");
        let expr = parse(
            "agent.a || agent.b && agent.c && agent.d || agent.e",
            &declarations(),
        )
        .unwrap();
        let Expr::Any(items) = expr else {
            panic!("expected Any")
        };
        assert_eq!(items.len(), 3);
        assert!(matches!(&items[1], Expr::All(inner) if inner.len() == 3));
    }

    #[test]
    fn type_errors_name_position_and_types() {
        let err = error("agent.trust_tier < \"2\"");
        assert_eq!((err.pos.line, err.pos.column), (1, 18));
        assert_eq!(err.message, "`<` compares numbers, this is a string");
        let err = error("resource.project == 1");
        assert_eq!(err.message, "`==` compares a string with an int");
        let err = error("agent.trust_tier in person.groups");
        assert_eq!(err.message, "`in` looks for an int in a string list");
        let err = error("context.time == 3");
        assert!(err.message.contains("hour()"), "{}", err.message);
        let err = error("agent.trust_tier");
        assert_eq!(
            err.message,
            "a condition must be true or false, this is an int"
        );
        let err = error("agent.trust_tier && true");
        assert!(
            err.message.contains("`&&` needs true or false"),
            "{}",
            err.message
        );
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = error("agent.trust_tier < 2 &&\n  hours(context.time) > 3");
        assert_eq!((err.pos.line, err.pos.column), (2, 3));
        assert!(
            err.message.starts_with("unknown function `hours`"),
            "{}",
            err.message
        );
        let err = error("(agent.x == 1");
        assert!(err.message.contains("to close `(`"), "{}", err.message);
        let err = error("agent.x == 1 == 2");
        assert!(err.message.contains("do not chain"), "{}", err.message);
        let err = error("tenant == 'x'");
        assert!(
            err.message.starts_with("unknown name `tenant`"),
            "{}",
            err.message
        );
        let err = error("agent.x == 1 agent.y");
        assert!(
            err.message.contains("after a complete condition"),
            "{}",
            err.message
        );
        assert!(error("hour(context.time, \"+25:00\") > 1")
            .message
            .contains("UTC offset"));
        assert!(error("hour(agent.x) > 1").message.contains("takes a time"));
        assert!(error("[1, 'a'] == 1").message.contains("mixes"));
        assert!(error("has('x')").message.contains("takes a variable"));
        assert!(error("").message.contains("empty"));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!(
            "{}true{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        assert!(error(&deep).message.contains("nested deeper"));
        let nots = format!("{}true", "!".repeat(MAX_NESTING + 1));
        assert!(error(&nots).message.contains("nested deeper"));
        let ok = format!("{}true{}", "(".repeat(MAX_NESTING), ")".repeat(MAX_NESTING));
        assert!(parse(&ok, &declarations()).is_ok());
        let long_chain = vec!["agent.x == 1"; 300].join(" && ");
        assert!(parse(&long_chain, &declarations()).is_ok());
    }

    #[test]
    fn offsets() {
        assert_eq!(utc_offset("+02:00"), FixedOffset::east_opt(7200));
        assert_eq!(utc_offset("-05:30"), FixedOffset::east_opt(-19800));
        assert_eq!(utc_offset("Z"), FixedOffset::east_opt(0));
        assert_eq!(utc_offset("2:00"), None);
    }
}
