//! sea-orm entity of the policy set versions.

pub mod policy_version {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "policy_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        pub content: Vec<u8>,
        pub content_sha256: String,
        pub author: String,
        #[sea_orm(column_type = "Text")]
        pub description: String,
        pub rolled_back_from: i64,
        pub rule_count: i32,
        pub role_assignment_count: i32,
        pub create_time: ChronoDateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
