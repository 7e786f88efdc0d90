//! sea-orm entities of the exchange tables. Lists are JSON text so that
//! SQLite and PostgreSQL store them alike.

pub mod grant {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "grants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub tenant: String,
        pub person_issuer: String,
        pub person_subject: String,
        pub agent_id: String,
        #[sea_orm(column_type = "Text")]
        pub audiences: String,
        #[sea_orm(column_type = "Text")]
        pub scopes: String,
        pub expire_time: DateTimeUtc,
        pub max_chain_depth: i32,
        #[sea_orm(column_type = "Text")]
        pub purpose: String,
        pub create_time: DateTimeUtc,
        pub revoke_time: Option<DateTimeUtc>,
        pub revoked_by: String,
        #[sea_orm(column_type = "Text")]
        pub revoke_reason: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
