//! sea-orm entities of the audit tables.

pub mod event {
    //! `audit_events`: one row per stored event. `body` holds the canonical
    //! bytes the hash covers; the other columns are copies for queries.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        #[sea_orm(unique)]
        pub event_id: String,
        pub time: DateTimeUtc,
        pub tenant: String,
        pub agent_id: String,
        pub person_subject: String,
        pub trace_id: String,
        pub decision_id: String,
        pub kind: String,
        pub outcome: String,
        #[sea_orm(column_type = "Text")]
        pub body: String,
        pub prev_hash: Vec<u8>,
        pub hash: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod checkpoint {
    //! `audit_checkpoints`: signed statements of the chain head.
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_checkpoints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub sequence: i64,
        pub head_hash: Vec<u8>,
        pub time: DateTimeUtc,
        pub key_id: String,
        pub signature: Vec<u8>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
