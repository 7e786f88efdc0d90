//! Tokens of the condition language, each with its 1-based line and column.

use super::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    Ident(String),
    Str(String),
    Int(i64),
    Double(f64),
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Not,
    And,
    Or,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Token {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match self {
            Self::Ident(name) => format!("`{name}`"),
            Self::Str(_) => "a string".to_owned(),
            Self::Int(_) | Self::Double(_) => "a number".to_owned(),
            Self::Dot => "`.`".to_owned(),
            Self::Comma => "`,`".to_owned(),
            Self::LParen => "`(`".to_owned(),
            Self::RParen => "`)`".to_owned(),
            Self::LBracket => "`[`".to_owned(),
            Self::RBracket => "`]`".to_owned(),
            Self::Not => "`!`".to_owned(),
            Self::And => "`&&`".to_owned(),
            Self::Or => "`||`".to_owned(),
            Self::Eq => "`==`".to_owned(),
            Self::Ne => "`!=`".to_owned(),
            Self::Lt => "`<`".to_owned(),
            Self::Le => "`<=`".to_owned(),
            Self::Gt => "`>`".to_owned(),
            Self::Ge => "`>=`".to_owned(),
        }
    }
}

/// A 1-based position in the condition text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    pub token: Token,
    pub pos: Pos,
}

struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

impl Cursor<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        let next = self.chars.next()?;
        if next == '\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else {
            self.pos.column += 1;
        }
        Some(next)
    }

    fn eat(&mut self, expected: char) -> bool {
        if self.peek() == Some(expected) {
            self.bump();
            return true;
        }
        false
    }
}

pub fn tokenize(text: &str) -> Result<Vec<Spanned>, ParseError> {
    let mut cursor = Cursor {
        chars: text.chars().peekable(),
        pos: Pos { line: 1, column: 1 },
    };
    let mut tokens = Vec::new();
    while let Some(next) = cursor.peek() {
        let pos = cursor.pos;
        if next.is_whitespace() {
            cursor.bump();
            continue;
        }
        let token = match next {
            'a'..='z' | 'A'..='Z' | '_' => {
                let mut name = String::new();
                while let Some(c) = cursor
                    .peek()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
                {
                    name.push(c);
                    cursor.bump();
                }
                Token::Ident(name)
            }
            '0'..='9' | '-' => number(&mut cursor, pos)?,
            '"' | '\'' => string(&mut cursor, pos)?,
            _ => {
                cursor.bump();
                match next {
                    '.' => Token::Dot,
                    ',' => Token::Comma,
                    '(' => Token::LParen,
                    ')' => Token::RParen,
                    '[' => Token::LBracket,
                    ']' => Token::RBracket,
                    '!' if cursor.eat('=') => Token::Ne,
                    '!' => Token::Not,
                    '&' if cursor.eat('&') => Token::And,
                    '|' if cursor.eat('|') => Token::Or,
                    '=' if cursor.eat('=') => Token::Eq,
                    '<' if cursor.eat('=') => Token::Le,
                    '<' => Token::Lt,
                    '>' if cursor.eat('=') => Token::Ge,
                    '>' => Token::Gt,
                    '&' => return Err(ParseError::new(pos, "`&` must be `&&`")),
                    '|' => return Err(ParseError::new(pos, "`|` must be `||`")),
                    '=' => return Err(ParseError::new(pos, "`=` must be `==`")),
                    other => {
                        return Err(ParseError::new(
                            pos,
                            format!("unexpected character `{}`", other.escape_default()),
                        ))
                    }
                }
            }
        };
        tokens.push(Spanned { token, pos });
    }
    Ok(tokens)
}

fn number(cursor: &mut Cursor<'_>, pos: Pos) -> Result<Token, ParseError> {
    let mut literal = String::new();
    if cursor.eat('-') {
        literal.push('-');
    }
    while let Some(c) = cursor.peek().filter(|c| c.is_ascii_digit() || *c == '.') {
        literal.push(c);
        cursor.bump();
    }
    if literal == "-" || literal.ends_with('.') {
        return Err(ParseError::new(pos, format!("`{literal}` is not a number")));
    }
    if literal.contains('.') {
        return match literal.parse::<f64>() {
            Ok(number) if number.is_finite() => Ok(Token::Double(number)),
            _ => Err(ParseError::new(pos, format!("`{literal}` is not a number"))),
        };
    }
    literal
        .parse::<i64>()
        .map(Token::Int)
        .map_err(|_| ParseError::new(pos, format!("`{literal}` is not a 64-bit integer")))
}

fn string(cursor: &mut Cursor<'_>, pos: Pos) -> Result<Token, ParseError> {
    let quote = cursor.bump().unwrap_or('"');
    let mut value = String::new();
    loop {
        match cursor.bump() {
            None | Some('\n') => return Err(ParseError::new(pos, "unterminated string")),
            Some(c) if c == quote => return Ok(Token::Str(value)),
            Some('\\') => match cursor.bump() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some(c @ ('\\' | '"' | '\'')) => value.push(c),
                _ => {
                    return Err(ParseError::new(
                        pos,
                        "unknown escape in string (use \\\\, \\\", \\', \\n or \\t)",
                    ))
                }
            },
            Some(c) => value.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<Token> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|s| s.token)
            .collect()
    }

    #[test]
    fn tokens_and_positions() {
        assert_eq!(
            kinds("agent.tier<=2 && !x"),
            vec![
                Token::Ident("agent".into()),
                Token::Dot,
                Token::Ident("tier".into()),
                Token::Le,
                Token::Int(2),
                Token::And,
                Token::Not,
                Token::Ident("x".into()),
            ]
        );
        assert_eq!(
            kinds("-1.5 'a\\'b' \"c\""),
            vec![
                Token::Double(-1.5),
                Token::Str("a'b".into()),
                Token::Str("c".into())
            ]
        );
        let tokens = tokenize("a ==\n  b").unwrap();
        assert_eq!(tokens[2].pos, Pos { line: 2, column: 3 });
    }

    #[test]
    fn lexical_errors_carry_their_position() {
        let err = tokenize("a ==\n b = c").unwrap_err();
        assert_eq!((err.pos.line, err.pos.column), (2, 4));
        assert!(err.message.contains("`==`"));
        assert!(tokenize("'open")
            .unwrap_err()
            .message
            .contains("unterminated"));
        assert!(tokenize("99999999999999999999").is_err());
        assert!(tokenize("a # b").is_err());
    }
}
