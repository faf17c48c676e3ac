//! The rows behind the list models QML shows (live fast-lane runs, the daemon's recorded runs):
//! named roles and plain values, built on any thread, turned into QVariants only when a
//! delegate asks. A refresh that keeps the same runs in the same order is a change of values
//! (views keep their scroll position and selection); anything else resets the model.

use std::pin::Pin;

use cxx_qt_lib::{QByteArray, QHash, QHashPair_i32_QByteArray, QString, QVariant};

/// The first role id models may use (`Qt::UserRole`); the ones below belong to Qt.
const FIRST_ROLE: i32 = 0x0100;

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Cell {
    fn to_variant(&self) -> QVariant {
        match self {
            Cell::Text(text) => QVariant::from(&QString::from(text)),
            Cell::Int(value) => QVariant::from(value),
            Cell::Float(value) => QVariant::from(value),
            Cell::Bool(value) => QVariant::from(value),
        }
    }
}

/// What replacing the rows changed, so the model tells its views the least it must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowsChange {
    Nothing,
    /// The same rows (by key, the first role) in the same order, some values new.
    Values,
    /// Rows came, went or moved.
    Layout,
}

/// Rows of a list model; the first role is the row's key.
pub struct ListRows {
    roles: &'static [&'static str],
    rows: Vec<Vec<Cell>>,
}

impl ListRows {
    pub fn new(roles: &'static [&'static str]) -> Self {
        Self {
            roles,
            rows: Vec::new(),
        }
    }

    pub fn count(&self) -> i32 {
        i32::try_from(self.rows.len()).unwrap_or(i32::MAX)
    }

    /// The value of `role` in `row`; an invalid QVariant outside the rows or roles.
    pub fn data(&self, row: i32, role: i32) -> QVariant {
        let column = role
            .checked_sub(FIRST_ROLE)
            .and_then(|c| usize::try_from(c).ok());
        usize::try_from(row)
            .ok()
            .and_then(|row| self.rows.get(row))
            .zip(column)
            .and_then(|(cells, column)| cells.get(column))
            .map_or_else(QVariant::default, Cell::to_variant)
    }

    pub fn role_names(&self) -> QHash<QHashPair_i32_QByteArray> {
        let mut names = QHash::<QHashPair_i32_QByteArray>::default();
        for (i, name) in (FIRST_ROLE..).zip(self.roles) {
            names.insert(i, QByteArray::from(*name));
        }
        names
    }

    /// What replacing the rows with `rows` would change.
    pub fn change_to(&self, rows: &[Vec<Cell>]) -> RowsChange {
        if rows == self.rows.as_slice() {
            return RowsChange::Nothing;
        }
        let same_keys = rows.len() == self.rows.len()
            && rows
                .iter()
                .zip(&self.rows)
                .all(|(new, old)| new.first() == old.first());
        if same_keys {
            RowsChange::Values
        } else {
            RowsChange::Layout
        }
    }

    /// Replaces the rows (between a model's begin and end reset when the layout changes).
    pub fn set(&mut self, rows: Vec<Vec<Cell>>) {
        self.rows = rows;
    }
}

/// A QAbstractListModel whose rows are a [`ListRows`]: what [`replace_rows`] needs of it.
pub trait RowsModel {
    fn rows(&self) -> &ListRows;
    fn rows_mut(self: Pin<&mut Self>) -> &mut ListRows;
    fn begin_reset(self: Pin<&mut Self>);
    fn end_reset(self: Pin<&mut Self>);
    /// Emits dataChanged for rows `first..=last`.
    fn rows_changed(self: Pin<&mut Self>, first: i32, last: i32);
}

/// Replaces a model's rows, telling its views as little as the change needs: nothing, new
/// values (dataChanged: views keep scroll position and selection), or a reset.
pub fn replace_rows<M: RowsModel>(mut model: Pin<&mut M>, rows: Vec<Vec<Cell>>) {
    let last = i32::try_from(rows.len()).unwrap_or(i32::MAX) - 1;
    match model.rows().change_to(&rows) {
        RowsChange::Nothing => {}
        RowsChange::Values => {
            model.as_mut().rows_mut().set(rows);
            model.rows_changed(0, last);
        }
        RowsChange::Layout => {
            model.as_mut().begin_reset();
            model.as_mut().rows_mut().set(rows);
            model.end_reset();
        }
    }
}

/// The list-model half every rows-backed QObject shares: `data`, `rowCount` and `roleNames`
/// (declared `#[cxx_override]` in its bridge) and [`RowsModel`] (with `beginResetModel`,
/// `endResetModel`, `index` and `dataChanged` declared `#[inherit]`). Its Rust struct holds the
/// rows in a field named `rows`.
macro_rules! rows_list_model {
    ($model:ty) => {
        impl $model {
            fn data(&self, index: &cxx_qt_lib::QModelIndex, role: i32) -> cxx_qt_lib::QVariant {
                self.rust().rows.data(index.row(), role)
            }

            fn row_count(&self, parent: &cxx_qt_lib::QModelIndex) -> i32 {
                if parent.is_valid() {
                    0
                } else {
                    self.rust().rows.count()
                }
            }

            fn role_names(&self) -> cxx_qt_lib::QHash<cxx_qt_lib::QHashPair_i32_QByteArray> {
                self.rust().rows.role_names()
            }
        }

        impl $crate::ui::list_rows::RowsModel for $model {
            fn rows(&self) -> &$crate::ui::list_rows::ListRows {
                &self.rust().rows
            }

            fn rows_mut(self: std::pin::Pin<&mut Self>) -> &mut $crate::ui::list_rows::ListRows {
                &mut self.rust_mut().get_mut().rows
            }

            fn begin_reset(self: std::pin::Pin<&mut Self>) {
                self.begin_reset_model();
            }

            fn end_reset(self: std::pin::Pin<&mut Self>) {
                self.end_reset_model();
            }

            fn rows_changed(self: std::pin::Pin<&mut Self>, first: i32, last: i32) {
                let root = cxx_qt_lib::QModelIndex::default();
                let (first, last) = (self.index(first, 0, &root), self.index(last, 0, &root));
                self.data_changed(&first, &last, &cxx_qt_lib::QVector::<i32>::default());
            }
        }
    };
}
pub(crate) use rows_list_model;

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, value: i64) -> Vec<Cell> {
        vec![Cell::Text(key.into()), Cell::Int(value)]
    }

    #[test]
    fn refreshes_that_keep_the_runs_only_change_values() {
        let mut rows = ListRows::new(&["runId", "steps"]);
        let mut apply = |new: Vec<Vec<Cell>>| {
            let change = rows.change_to(&new);
            rows.set(new);
            change
        };
        assert_eq!(apply(vec![row("a", 1), row("b", 2)]), RowsChange::Layout);
        assert_eq!(apply(vec![row("a", 1), row("b", 2)]), RowsChange::Nothing);
        assert_eq!(apply(vec![row("a", 5), row("b", 2)]), RowsChange::Values);
        assert_eq!(apply(vec![row("b", 2), row("a", 5)]), RowsChange::Layout);
        assert_eq!(apply(vec![row("b", 2)]), RowsChange::Layout);
        assert_eq!(rows.count(), 1);
    }
}
