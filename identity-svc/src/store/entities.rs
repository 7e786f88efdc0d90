//! sea-orm entities of the identity tables. Lists (attributes, ceiling) are
//! JSON text so that SQLite and PostgreSQL store them alike.

pub mod agent {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "agents")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant: String,
        pub owner: String,
        pub name: String,
        #[sea_orm(column_type = "Text")]
        pub description: String,
        pub model: String,
        pub provider: String,
        pub status: String,
        #[sea_orm(column_type = "Text")]
        pub status_reason: String,
        #[sea_orm(column_type = "Text")]
        pub attributes: String,
        #[sea_orm(column_type = "Text")]
        pub ceiling_audiences: String,
        #[sea_orm(column_type = "Text")]
        pub ceiling_scopes: String,
        /// Bumped when the agent is suspended or revoked; only tokens of the
        /// current generation (`gen` claim) are active.
        pub token_generation: i64,
        /// When the current generation started (NULL: generation 0).
        pub token_generation_time: Option<DateTimeUtc>,
        pub create_time: DateTimeUtc,
        pub update_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod credential {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub agent_id: String,
        /// `client_secret`, `public_key` or `federated`.
        pub kind: String,
        pub description: String,
        pub create_time: DateTimeUtc,
        pub expire_time: Option<DateTimeUtc>,
        /// HMAC-SHA-256 of the secret under the pepper (client secrets).
        pub secret_hash: Option<Vec<u8>>,
        pub secret_prefix: Option<String>,
        /// The public key's kid (public keys).
        pub kid: Option<String>,
        /// The public JWK as JSON (public keys).
        #[sea_orm(column_type = "Text", nullable)]
        pub jwk: Option<String>,
        /// The trusted external issuer (federated credentials).
        pub fed_issuer: Option<String>,
        /// The exact external `sub` (federated, unless a pattern is set).
        pub fed_subject: Option<String>,
        /// A `*` glob over the external `sub` (federated, unless a subject
        /// is set).
        pub fed_subject_pattern: Option<String>,
        /// The audience the external token must carry (federated).
        pub fed_audience: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod revoked_token {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "revoked_tokens")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub jti: String,
        pub agent_id: String,
        /// The token's `exp`: the row may go once this has passed.
        pub expire_time: i64,
        pub revoke_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod deleted_credential {
    use sea_orm::entity::prelude::*;

    /// A deleted credential, kept while tokens obtained with it may still
    /// be unexpired, for enforcement points that list revocations.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "deleted_credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub agent_id: String,
        pub delete_time: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod used_assertion {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "used_assertions")]
    pub struct Model {
        /// SHA-256 (hex) of client id and jti.
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub expire_time: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod setting {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "identity_settings")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        #[sea_orm(column_type = "Text")]
        pub value: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
