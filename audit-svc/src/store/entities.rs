//! sea-orm entities of the audit tables. Blocks and event ids are read
//! and written with explicit SQL in `queries` (backend-specific array
//! columns); only checkpoints use an entity.

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
